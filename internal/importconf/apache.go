package importconf

func (t *translation) apache(nodes []*node) {}
