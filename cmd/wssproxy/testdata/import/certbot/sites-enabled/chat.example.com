map $http_upgrade $connection_upgrade {
	default upgrade;
	''      close;
}

server {
	server_name chat.example.com www.chat.example.com;
	root /var/www/chat;
	index index.html index.htm;

	location /wss {
		include snippets/websocket.conf;
		proxy_pass http://127.0.0.1:8282;
		proxy_read_timeout 3600s;
	}

	location / {
		try_files $uri $uri/ =404;
	}

	listen [::]:443 ssl ipv6only=on; # managed by Certbot
	listen 443 ssl; # managed by Certbot
	ssl_certificate /etc/letsencrypt/live/chat.example.com/fullchain.pem; # managed by Certbot
	ssl_certificate_key /etc/letsencrypt/live/chat.example.com/privkey.pem; # managed by Certbot
	include /etc/letsencrypt/options-ssl-nginx.conf; # managed by Certbot
	ssl_dhparam /etc/letsencrypt/ssl-dhparams.pem; # managed by Certbot
}

server {
	if ($host = www.chat.example.com) {
		return 301 https://$host$request_uri;
	} # managed by Certbot

	if ($host = chat.example.com) {
		return 301 https://$host$request_uri;
	} # managed by Certbot

	listen 80;
	listen [::]:80;
	server_name chat.example.com www.chat.example.com;
	return 404; # managed by Certbot
}
