package upstream

import (
	"slices"
	"sync/atomic"
)

// Mode is how a set of nodes shares the traffic.
type Mode uint8

const (
	// Failover: the first usable node in list order takes everything.
	Failover Mode = iota
	// Balance: weighted round robin over the usable nodes.
	Balance
)

// Select picks a node: healthy nodes first, then nodes of unknown state
// (the status tiers); down nodes and those skip rejects are never picked.
// With Balance, counter spreads the picks by weight: counter n takes the
// node that owns slot n mod the total weight. It is a pure function of its
// arguments and the nodes' states.
func Select(nodes []*Node, mode Mode, counter uint64, skip func(*Node) bool) *Node {
	for _, tier := range [...]State{Healthy, Unknown} {
		if mode == Failover {
			for _, n := range nodes {
				if usable(n, tier, skip) {
					return n
				}
			}
			continue
		}
		total := 0
		for _, n := range nodes {
			if usable(n, tier, skip) {
				total += n.Weight
			}
		}
		if total == 0 {
			continue
		}
		slot := int(counter % uint64(total))
		for _, n := range nodes {
			if !usable(n, tier, skip) {
				continue
			}
			if slot < n.Weight {
				return n
			}
			slot -= n.Weight
		}
	}
	return nil
}

func usable(n *Node, tier State, skip func(*Node) bool) bool {
	return n.State() == tier && (skip == nil || !skip(n))
}

// Via is what a connection's via resolves to: the candidate nodes and how
// to choose among them.
type Via struct {
	Name  string // as configured: "dmz", "dmz/a1" or "auto"
	nodes []*Node
	mode  Mode
	next  *atomic.Uint64 // shared by every connection of one cluster
}

// Pick chooses a node not yet tried for this request, or nil.
func (v *Via) Pick(tried []*Node) *Node {
	var skip func(*Node) bool
	if len(tried) > 0 {
		skip = func(n *Node) bool { return slices.Contains(tried, n) }
	}
	return Select(v.nodes, v.mode, v.next.Add(1)-1, skip)
}

// Nodes are the candidate nodes.
func (v *Via) Nodes() []*Node { return v.nodes }
