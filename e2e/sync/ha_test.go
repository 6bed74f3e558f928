//go:build linux

package sync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/kv/etcdtest"
	"github.com/pam-totp/pam-totp/pkg/mail/mailtest"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// newEtcd starts a 3-member etcd cluster on 127.0.0.1 for one test (build/tools/etcd, from
// `make etcd`) and stops it when the test ends. Tests that kill members own their cluster.
func newEtcd(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	c, err := etcdtest.Start(etcdtest.Options{Dir: pamtest.PrivateDir(t)})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestReplicasShareOneStore: two registry replicas on one etcd cluster. A user and a token
// written through replica B reach a node that follows replica A and log in there; both replicas
// report the same revision.
func TestReplicasShareOneStore(t *testing.T) {
	needRoot(t)
	a := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{Etcd: newEtcd(t)})
	b := a.replica()
	n := newNode(t, a, nodeOptions{})
	for _, r := range []*registry{a, b} {
		if log := r.readLog(); !strings.Contains(log, `msg="store opened" store="etcd http://127.0.0.1:`) {
			t.Fatalf("registry %s did not open the etcd store; its log:\n%s", r.url, tail(log, 20))
		}
	}

	user := pamtest.AddUser(t, userPrefix)
	b.addUser(user)
	step := nextStep(t)
	tok, _ := b.addToken(user, "phone")
	rev := b.rev()
	n.waitRev(rev, 10*time.Second)
	if got := a.rev(); got < rev {
		t.Errorf("replica A at revision %d after replica B wrote %d", got, rev)
	}
	if res := n.login(user, code(tok, step)); res.Code != pamtest.Success {
		t.Fatalf("login on the node of replica A with a token written through B: %s %s", pamtest.Name(res.Code), res.Fatal)
	}
}

// readLog is the registry's log so far.
func (r *registry) readLog() string {
	b, _ := os.ReadFile(r.proc.log)
	return string(b)
}

// replicaPair is two registry replicas on a fresh etcd cluster and a node following each, after
// their first sync; nodeOptions apply to both nodes.
func replicaPair(t *testing.T, o nodeOptions, ro regOptions) (c *etcdtest.Cluster, regs []*registry, nodes []*node) {
	t.Helper()
	c = newEtcd(t)
	ro.Etcd = c
	a := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), ro)
	regs = []*registry{a, a.replica()}
	for _, r := range regs {
		nodes = append(nodes, newNode(t, r, o))
	}
	waitAll(nodes, a.rev(), 15*time.Second)
	return c, regs, nodes
}

// waitAll waits until every node applied revision rev.
func waitAll(nodes []*node, rev int64, d time.Duration) {
	for _, n := range nodes {
		n.waitRev(rev, d)
	}
}

// lastRev is the highest revision the replicas report.
func lastRev(regs []*registry) int64 {
	var rev int64
	for _, r := range regs {
		rev = max(rev, r.rev())
	}
	return rev
}

// loginUser adds a local user with one token through r and waits until every node has it.
func loginUser(t *testing.T, r *registry, nodes []*node) (string, token.Token) {
	t.Helper()
	user := pamtest.AddUser(t, userPrefix)
	r.addUser(user)
	tok, _ := r.addToken(user, "phone")
	waitAll(nodes, r.rev(), 10*time.Second)
	return user, tok
}

// wantInStep checks that the nodes hold one set of records: each node's records give the count
// and digest that the registry announced to it, all nodes have the same, and every replica found
// its nodes' digests equal to its own at revision rev.
func wantInStep(t *testing.T, regs []*registry, nodes []*node, rev int64) {
	t.Helper()
	d0, _ := nodes[0].digest()
	for _, n := range nodes {
		d, m := n.digest()
		if !d.Matches(m.Count, m.Digest) {
			t.Errorf("%s: records give %d/%s, the registry announced %d/%s", n.name, d.Count(), d, m.Count, m.Digest)
		}
		if d.String() != d0.String() || d.Count() != d0.Count() {
			t.Errorf("%s: %d records, digest %s; %s: %d records, digest %s", n.name, d.Count(), d, nodes[0].name, d0.Count(), d0)
		}
	}
	// A node reports its digest to the replica it follows (acks are kept in the replica's memory).
	for i, r := range regs {
		n := nodes[i]
		eventually(t, 10*time.Second, fmt.Sprintf("%s reports revision %d with the digest of %s", n.name, rev, r.url), func() (bool, error) {
			list, err := r.admin.Nodes(ctx(t))
			if err != nil {
				return false, err
			}
			for _, got := range list {
				if got.Name == n.name {
					return got.AppliedRev >= rev && got.DigestOK != nil && *got.DigestOK, nil
				}
			}
			return false, fmt.Errorf("%s not in the node list", n.name)
		})
	}
}

// apiStatus is the HTTP status of a registry's error answer (0: not an answer of the registry).
func apiStatus(err error) int {
	var e *adminclient.APIError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// TestReplicasConcurrentAdds: two replicas each take 500 token adds at once, 8 at a time, for
// the same 50 users: every add is acknowledged and there, exactly 1000 tokens, the nodes of both
// replicas end with the registry's digest, and the audit log verifies through either replica and
// holds exactly the 1000 adds and the 50 user adds.
func TestReplicasConcurrentAdds(t *testing.T) {
	needRoot(t)
	const users, perReplica, workers = 50, 500, 8
	_, regs, nodes := replicaPair(t, nodeOptions{}, regOptions{RequestTimeout: 10 * time.Second})
	// Registry users only: nobody logs in, so no local accounts are needed.
	names := make([]string, users)
	for i := range names {
		names[i] = fmt.Sprintf("ha%02d%s", i, pamtest.RandName(4))
		regs[i%2].addUser(names[i])
	}
	auditBefore := auditCount(t, regs[0])

	start := time.Now()
	var wg sync.WaitGroup
	var retried atomic.Int64
	errs := make(chan error, 2*perReplica)
	for ri, r := range regs {
		jobs := make(chan int)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					// A 503 "busy with concurrent changes" is ErrConflict: the change's compares
					// failed, nothing was written, and the answer says to try again, as a client does.
					for try := 1; ; try++ {
						_, _, err := r.tryAddToken(ctx(t), names[i%users], fmt.Sprintf("r%d-%03d", ri, i))
						if err != nil && try < 5 && apiStatus(err) == http.StatusServiceUnavailable &&
							strings.Contains(err.Error(), "busy with concurrent changes") {
							retried.Add(1)
							continue
						}
						if err != nil {
							errs <- err
						}
						break
					}
				}
			}()
		}
		go func() {
			for i := range perReplica {
				jobs <- i
			}
			close(jobs)
		}()
	}
	wg.Wait()
	close(errs)
	took := time.Since(start)
	for err := range errs {
		t.Errorf("concurrent add: %v", err)
	}
	t.Logf("%d token adds through 2 replicas, %d at a time each: %v (%.0f/s); %d answered busy and sent again",
		2*perReplica, workers, took.Round(time.Millisecond), float64(2*perReplica)/took.Seconds(), retried.Load())

	for _, r := range regs {
		total := 0
		for _, u := range names {
			toks, err := r.admin.Tokens(ctx(t), u)
			if err != nil {
				t.Fatalf("Tokens(%s) at %s: %v", u, r.url, err)
			}
			if len(toks) != 2*perReplica/users {
				t.Errorf("Tokens(%s) at %s: %d tokens, want %d", u, r.url, len(toks), 2*perReplica/users)
			}
			total += len(toks)
		}
		if total != 2*perReplica {
			t.Errorf("%s lists %d tokens, want %d", r.url, total, 2*perReplica)
		}
	}
	rev := lastRev(regs)
	waitAll(nodes, rev, 20*time.Second)
	wantInStep(t, regs, nodes, rev)
	if d, _ := nodes[0].digest(); d.Count() != 2*perReplica {
		t.Errorf("%s has %d records, want %d", nodes[0].name, d.Count(), 2*perReplica)
	}

	var recs []adminclient.AuditRecord
	for _, r := range regs {
		check, err := r.admin.VerifyAudit(ctx(t))
		if err != nil || !check.OK {
			t.Errorf("audit verify at %s = %+v, %v; want ok", r.url, check, err)
		}
		recs = auditRecords(t, r)
		if int64(len(recs)) != check.Records {
			t.Errorf("audit verify at %s checked %d records; the log has %d", r.url, check.Records, len(recs))
		}
	}
	actions := map[string]int{}
	for _, rec := range recs[auditBefore:] {
		actions[rec.Action]++
	}
	if actions["token.create"] != 2*perReplica || len(actions) != 1 {
		t.Errorf("audit records of the adds: %v, want exactly %d token.create", actions, 2*perReplica)
	}
	users0 := 0
	for _, rec := range recs[:auditBefore] {
		if rec.Action == "user.create" {
			users0++
		}
	}
	if users0 != users {
		t.Errorf("audit log has %d user.create records, want %d", users0, users)
	}
}

// auditRecords is the whole audit log of r, in pages.
func auditRecords(t *testing.T, r *registry) []adminclient.AuditRecord {
	t.Helper()
	var all []adminclient.AuditRecord
	for {
		var after int64
		if len(all) > 0 {
			after = all[len(all)-1].Seq
		}
		page, err := r.admin.Audit(ctx(t), after, 10000)
		if err != nil {
			t.Fatalf("Audit(after %d) at %s: %v", after, r.url, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
	}
}

func auditCount(t *testing.T, r *registry) int { return len(auditRecords(t, r)) }

// TestReplicasOneCodeTwoNodes: one code used at the same moment on two nodes that follow
// different replicas: the claims meet in etcd, and exactly one login is accepted, in two rounds.
func TestReplicasOneCodeTwoNodes(t *testing.T) {
	needRoot(t)
	// connect_ms at its most: a login must reach the resident verifier, which claims.
	_, regs, nodes := replicaPair(t, nodeOptions{RateLimit: budgetRate, ConnectMS: 5000}, regOptions{})
	user, tok := loginUser(t, regs[1], nodes)
	step := nextStep(t)
	for round, c := range []string{code(tok, step), code(tok, step+1)} {
		results := make([]pamtest.Result, len(nodes))
		onAll(nodes, func(i int, n *node) { results[i] = n.login(user, c) })
		wins := 0
		for i, res := range results {
			if res.Fatal != "" {
				t.Fatalf("round %d, %s: %s", round, nodes[i].name, res.Fatal)
			}
			if res.Code == pamtest.Success {
				wins++
				continue
			}
			res.Want(t, fmt.Sprintf("round %d, %s lost the claim", round, nodes[i].name), pam.ErrAuth, 1)
			res.WantError(t, nodes[i].name+" same code", "already been used")
		}
		if wins != 1 {
			t.Fatalf("round %d: one code on two nodes of two replicas at once: %d successes, want exactly 1", round, wins)
		}
	}
}

// writer adds tokens through the replicas in turn until stopped, and keeps what was
// acknowledged and how the others failed.
type writer struct {
	mu    sync.Mutex
	acked []token.Token
	fails []error
	n     atomic.Int64 // acknowledged adds
}

func (w *writer) run(stop <-chan struct{}, regs []*registry, users []string, id int) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		r := regs[(id+i)%len(regs)]
		c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		tok, _, err := r.tryAddToken(c, users[(id+i)%len(users)], fmt.Sprintf("w%d-%04d", id, i))
		cancel()
		w.mu.Lock()
		if err != nil {
			w.fails = append(w.fails, err)
		} else {
			w.acked = append(w.acked, tok)
			w.n.Add(1)
		}
		w.mu.Unlock()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestEtcdLeaderKilled: kill -9 of the etcd leader while four writers add tokens through both
// replicas and nodes of both log in: every acknowledged add is in the registry and on both nodes,
// a refused one was refused with 503, the nodes end in step, and every login succeeds.
func TestEtcdLeaderKilled(t *testing.T) {
	needRoot(t)
	c, regs, nodes := replicaPair(t, nodeOptions{}, regOptions{})
	var logins []string
	var toks []token.Token
	for range 4 {
		u, tok := loginUser(t, regs[len(logins)%2], nodes)
		logins, toks = append(logins, u), append(toks, tok)
	}
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("hk%02d%s", i, pamtest.RandName(4))
		regs[i%2].addUser(names[i])
	}

	w := &writer{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(stop, regs, names, id) }()
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriters)
	eventually(t, 20*time.Second, "40 adds before the kill", func() (bool, error) { return w.n.Load() >= 40, nil })

	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	lead, err := c.Leader(lctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	step := nextStep(t)
	before := w.n.Load()
	if err := c.Kill(lead); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Logins during the election: each user once, on the nodes in turn.
	results := make([]pamtest.Result, len(logins))
	var lw sync.WaitGroup
	for i := range logins {
		lw.Add(1)
		go func() { defer lw.Done(); results[i] = nodes[i%2].login(logins[i], code(toks[i], step)) }()
	}
	lw.Wait()
	for i, res := range results {
		res.Want(t, fmt.Sprintf("%s login while the etcd leader is down", nodes[i%2].name), pamtest.Success, 1)
	}
	eventually(t, 30*time.Second, "40 adds after the kill", func() (bool, error) { return w.n.Load() >= before+40, nil })
	t.Logf("etcd leader m%d killed: 40 more adds acknowledged within %v", lead, time.Since(killed).Round(time.Millisecond))
	stopWriters()

	for _, err := range w.fails {
		if apiStatus(err) != http.StatusServiceUnavailable {
			t.Errorf("an add failed during the election with %v, want a 503", err)
		}
	}
	rev := lastRev(regs)
	waitAll(nodes, rev, 20*time.Second)
	for _, r := range regs {
		have := map[string]bool{}
		for _, u := range names {
			list, err := r.admin.Tokens(ctx(t), u)
			if err != nil {
				t.Fatalf("Tokens(%s) at %s: %v", u, r.url, err)
			}
			for _, tok := range list {
				have[u+"/"+tok.ID] = true
			}
		}
		for _, tok := range w.acked {
			if !have[tok.User+"/"+tok.ID] {
				t.Errorf("%s: acknowledged token %s/%s is missing", r.url, tok.User, tok.ID)
			}
		}
	}
	for _, n := range nodes {
		for _, tok := range w.acked {
			if got := n.tokenState(tok.User, tok.ID); got != string(token.Active) {
				t.Errorf("%s: acknowledged token %s/%s is %q, want active", n.name, tok.User, tok.ID, got)
			}
		}
	}
	wantInStep(t, regs, nodes, rev)
	t.Logf("%d adds acknowledged, %d refused during the election", len(w.acked), len(w.fails))
	// After the election: a new token through each replica logs in on the other's node.
	for i, r := range regs {
		u, tok := loginUser(t, r, nodes)
		nodes[1-i].login(u, code(tok, step)).Want(t, nodes[1-i].name+" token written after the election", pamtest.Success, 1)
	}
}

// TestEtcdQuorumLost: with two of three etcd members gone, an admin write through either
// replica is refused with 503 and a reason within about the request timeout (2 s), logins on the
// nodes go on from their tokens.db, and once the members are back the replicas take writes again
// by themselves and the nodes get them.
func TestEtcdQuorumLost(t *testing.T) {
	needRoot(t)
	c, regs, nodes := replicaPair(t, nodeOptions{}, regOptions{})
	user, tok := loginUser(t, regs[0], nodes)
	step := nextStep(t)
	// SIGKILL: SIGTERM ends the same, but etcd takes about 7 s to close its clients' streams.
	down := []int{1, 2}
	for _, i := range down {
		if err := c.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range regs {
		start := time.Now()
		_, _, err := r.tryAddToken(ctx(t), user, "no-quorum")
		took := time.Since(start)
		var e *adminclient.APIError
		if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || !strings.Contains(e.Message, "etcd") {
			t.Errorf("add through %s without quorum = %v, want a 503 that names etcd", r.url, err)
		}
		if took > 5*time.Second {
			t.Errorf("add through %s without quorum answered after %v, want about the 2 s request timeout", r.url, took)
		}
		t.Logf("add through %s without quorum: %v after %v", r.url, err, took.Round(time.Millisecond))
	}
	for i, n := range nodes {
		res := n.login(user, code(tok, step+uint64(i)))
		res.Want(t, n.name+" login without quorum", pamtest.Success, 1)
		if res.Elapsed > 5*time.Second {
			t.Errorf("%s: login without quorum took %v", n.name, res.Elapsed)
		}
	}

	for _, i := range down {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Now()
	var tok2 token.Token
	eventually(t, 30*time.Second, "an add through replica B after the members returned", func() (bool, error) {
		var err error
		tok2, _, err = regs[1].tryAddToken(ctx(t), user, "quorum-back")
		return err == nil, err
	})
	t.Logf("writes resumed %v after the members were restarted", time.Since(back).Round(time.Millisecond))
	rev := lastRev(regs)
	waitAll(nodes, rev, 20*time.Second)
	wantInStep(t, regs, nodes, rev)
	next := nextStep(t)
	nodes[0].login(user, code(tok2, next)).Want(t, nodes[0].name+" token written after quorum returned", pamtest.Success, 1)
	if got := nodes[1].tokenState(user, tok2.ID); got != string(token.Active) {
		t.Errorf("%s: the token written after quorum returned is %q, want active", nodes[1].name, got)
	}
}

// TestReplicasBootstrapCodeOnce: with bootstrap = "mail", a code mailed through replica A is good
// once across the replicas: sent with the same code to begin through A and B at the same moment,
// exactly one enrollment starts; the code is refused through either replica afterwards.
func TestReplicasBootstrapCodeOnce(t *testing.T) {
	needRoot(t)
	sink := mailtest.Start(t) // skips without aiosmtpd
	a := startRegistry(t, pamtest.NewCA(t, pamtest.PrivateDir(t), "ca"), regOptions{Etcd: newEtcd(t), Sections: fmt.Sprintf(
		"\n[mail]\nhost = %q\nfrom = \"totp@registry.test\"\ncontact = \"the test helpdesk\"\n"+
			"starttls = \"never\"\ntimeout = \"5s\"\nretries = 0\n\n[enroll]\nbootstrap = \"mail\"\n", sink.Addr)})
	b := a.replica()
	nn, err := a.admin.AddNode(ctx(t), "node-"+pamtest.RandName(6), scope)
	if err != nil {
		t.Fatal(err)
	}
	user := "hb" + pamtest.RandName(6)
	addr := user + "@users.test"
	if _, err := b.admin.AddUser(ctx(t), adminclient.NewUser{Name: user, Mail: addr, Scopes: []string{scope}}); err != nil {
		t.Fatalf("AddUser(%s): %v", user, err)
	}
	if status, body := a.nodeCall(nn.Credential, registryapi.PathEnrollBootstrap, registryapi.BootstrapRequest{User: user}); status != http.StatusOK {
		t.Fatalf("bootstrap through A = %d %s", status, body)
	}
	var msgs []string
	eventually(t, 10*time.Second, "the bootstrap code reaches the sink", func() (bool, error) {
		msgs = sink.MessagesTo(t, addr)
		return len(msgs) > 0, nil
	})
	_, after, ok := strings.Cut(msgs[0], "your one-time code to enroll a first token is:")
	if !ok || len(strings.Fields(after)) == 0 {
		t.Fatalf("no bootstrap code in the mail:\n%s", msgs[0])
	}
	bootCode := strings.Fields(after)[0]

	regs := []*registry{a, b}
	statuses := make([]int, len(regs))
	var wg sync.WaitGroup
	for i, r := range regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = r.nodeCall(nn.Credential, registryapi.PathEnrollBegin,
				registryapi.BeginRequest{User: user, Name: fmt.Sprintf("phone%d", i), Proof: bootCode})
		}()
	}
	wg.Wait()
	wins := 0
	for _, st := range statuses {
		if st == http.StatusOK {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("one bootstrap code sent to begin through A and B at once: statuses %v, want exactly one 200", statuses)
	}
	for _, r := range regs {
		if status, body := r.nodeCall(nn.Credential, registryapi.PathEnrollBegin,
			registryapi.BeginRequest{User: user, Name: "again", Proof: bootCode}); status == http.StatusOK {
			t.Errorf("the used bootstrap code began another enrollment through %s: %s", r.url, body)
		}
	}
}

// nodeCall POSTs body as JSON to the registry's path with a node's credential and returns the
// status and the body of the answer.
func (r *registry) nodeCall(cred, path string, body any) (int, string) {
	data, err := json.Marshal(body)
	if err != nil {
		r.t.Error(err)
		return 0, ""
	}
	req, err := http.NewRequest(http.MethodPost, r.url+path, bytes.NewReader(data))
	if err != nil {
		r.t.Error(err)
		return 0, ""
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	req.Header.Set("Content-Type", "application/json")
	resp, err := tlsClient(r.t, r.ca).Do(req)
	if err != nil {
		r.t.Errorf("POST %s at %s: %v", path, r.url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(out)
}
