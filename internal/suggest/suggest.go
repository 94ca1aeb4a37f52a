// Package suggest finds what a mistyped name was meant to be: a
// configuration key, a flag, a command.
package suggest

import "strings"

// Nearest returns the candidate that name is a near miss of: at most two
// edits away, letter case aside, the closest first (the earliest of
// equals). "" when none is, or when name is too short to tell (one or
// two letters are two edits from most short names).
func Nearest(candidates []string, name string) string {
	if len(name) < 3 {
		return ""
	}
	best, bestD := "", 3
	for _, c := range candidates {
		if d := distance(strings.ToLower(name), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
