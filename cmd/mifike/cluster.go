package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mifike/mifike/internal/control"
	"github.com/spf13/cobra"
)

// clusterCmd is "mifike cluster status" and "mifike cluster move ID
// NODE" on a gateway cluster node (docs/cluster.md).
func clusterCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:         "cluster status [--json] | move ID NODE",
		Short:       "a gateway cluster node: membership, and hand an IKE SA to another node",
		Long:        "Ask a gateway cluster node (docs/cluster.md) for its view of the cluster, or have it hand an IKE SA\nto another node.",
		RunE:        parentRun(stderr, "cluster command"),
		Annotations: map[string]string{"group": "true"},
	}
	cmd.AddCommand(clusterStatusCmd(stdout, stderr), clusterMoveCmd(stdout, stderr))
	return cmd
}

func clusterStatusCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("status [--json]", "this node's view of its gateway cluster",
		"This node's view of its gateway cluster: membership, fencing, live nodes and the IKE SAs each owns.", stdout, stderr)
	return v.run(0, 0, func([]string) int {
		return v.call(func(c *control.Client) error {
			var st control.ClusterStatus
			if done, err := v.ask(c, "cluster-status", nil, &st); done || err != nil {
				return err
			}
			state := "serving"
			switch {
			case !st.Joined:
				state = "not joined"
			case st.Fenced:
				state = "fenced (sends nothing)"
			}
			fmt.Fprintf(stdout, "cluster %s, node %d: %s, %d SAs owned; new clones placed by %s\n", st.Name, st.Node, state, st.Owned, st.Placement)
			if st.Error != "" {
				fmt.Fprintf(stdout, "last error: %s\n", st.Error)
			}
			w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "node\tIKE SAs\taddresses\t")
			for _, m := range st.Members {
				me := ""
				if m.Node == st.Node {
					me = " (this node)"
				}
				fmt.Fprintf(w, "%d%s\t%d\t%s\t\n", m.Node, me, m.SAs, strings.Join(m.Addrs, ", "))
			}
			return w.Flush()
		})
	})
}

func clusterMoveCmd(stdout, stderr io.Writer) *cobra.Command {
	v := newVerb("move ID NODE", "hand an IKE SA to another cluster node",
		"Hand IKE SA ID to cluster node NODE, which moves it to its own address (RFC 7791 load sharing).", stdout, stderr)
	v.completeFirst(true, false)
	return v.run(2, 2, v.clusterMove)
}

func (v *verb) clusterMove(pos []string) int {
	stdout := v.stdout
	id, isID, code := v.ikeSA(pos[0])
	if code >= 0 {
		return code
	}
	if !isID {
		return v.usageError("cluster move: %q is not an IKE SA id (the number in brackets in mifike list-sas)", pos[0])
	}
	node, err := strconv.ParseUint(pos[1], 10, 8)
	if err != nil || node == 0 {
		return v.usageError("cluster move: %q is not a node ID (1 to 255; mifike cluster status lists them)", pos[1])
	}
	return v.call(func(c *control.Client) error {
		if done, err := v.ask(c, "cluster-move", map[string]any{"ike_sa": id, "node": node}, nil); done || err != nil {
			return err
		}
		fmt.Fprintf(stdout, "IKE SA %d handed to node %d\n", id, node)
		return nil
	})
}
