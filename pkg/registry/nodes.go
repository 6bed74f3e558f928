package registry

import (
	"errors"
	"net/http"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
)

type nodeRequest struct {
	Name   string `json:"name"`
	Scope  string `json:"scope"`
	Reason string `json:"reason"`
}

func parseNodeRequest(body []byte) (nodeRequest, error) {
	var q nodeRequest
	if err := decodeStrict(body, &q); err != nil {
		return q, err
	}
	if !validNodeName(q.Name) {
		return q, badRequest("name: a host name (letters, digits, '.', '_', '-'), at most %d", maxNodeName)
	}
	if !validScope(q.Scope) {
		return q, badRequest("scope: letters, digits, '.', '_' and '-', at most %d", maxScopeLen)
	}
	return q, nil
}

func (s *Server) createNode(r *http.Request, actor string, body []byte) (int, any, error) {
	q, err := parseNodeRequest(body)
	if err != nil {
		return 0, nil, err
	}
	cred, hash, err := s.newCredential(q.Name)
	if err != nil {
		return 0, nil, err
	}
	out, err := s.converge(r.Context(), actor, "node.create", "node/"+q.Name, reasonOf(r, q.Reason), func(x *txn) error {
		var n nodeRecord
		err := x.getJSON(prefixNode+q.Name, &n)
		switch {
		case errors.Is(err, kv.ErrNotFound) || isNotFound(err):
			return x.putNode(nodeRecord{Name: q.Name, Scope: q.Scope, Hash: hash, Created: s.now().UTC()})
		case err != nil:
			return err
		case n.Scope != q.Scope:
			return conflict("node %q exists in scope %q, not %q; remove it first to add it anew", q.Name, n.Scope, q.Scope)
		}
		// It exists as asked: its credential stays as it is (and is not shown again).
		return errUnchanged
	})
	if err != nil {
		return 0, nil, err
	}
	if !out.Changed {
		return http.StatusOK, registryapi.NewNode{Name: q.Name, Scope: q.Scope, Outcome: out}, nil
	}
	return http.StatusCreated, registryapi.NewNode{Name: q.Name, Scope: q.Scope, Credential: cred, Outcome: out}, nil
}

func (s *Server) listNodes(r *http.Request, _ string, _ []byte) (int, any, error) {
	var recs []nodeRecord
	err := s.store.View(r.Context(), func(_ int64, tx kv.Txn) error {
		return tx.Range(prefixNode, func(kvp kv.KeyValue) error {
			n, err := s.decodeNode(kvp.Key, kvp.Value)
			if errors.Is(err, errBadRecord) {
				return nil // refused and logged: listed nowhere, accepted nowhere
			}
			if err != nil {
				return err
			}
			recs = append(recs, n)
			return nil
		})
	})
	if err != nil {
		return 0, nil, err
	}
	rev := s.idx.revision()
	out := make([]registryapi.Node, 0, len(recs))
	s.mu.Lock()
	defer s.mu.Unlock()
	admin := adminOf(r.Context())
	for _, n := range recs {
		if !admin.allowsScopes([]string{n.Scope}) {
			continue
		}
		v := registryapi.Node{Name: n.Name, Scope: n.Scope, Created: n.Created, Streams: len(s.streams[n.Name])}
		if a, ok := s.acks[n.Name]; ok {
			v.AppliedRev, v.Count, v.DigestOK, v.LastContact, v.LagMS, v.Version = a.Rev, a.Count, a.DigestOK, a.At, a.LagMS, a.Version
			v.Behind = max(0, rev-a.Rev)
		}
		out = append(out, v)
	}
	return http.StatusOK, out, nil
}

func (s *Server) deleteNode(r *http.Request, actor string, body []byte) (int, any, error) {
	var q reasonRequest
	if err := decodeOptional(body, &q); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	s.mu.Lock()
	open := len(s.streams[name])
	s.mu.Unlock()
	_, err := s.change(r.Context(), actor, "node.delete", "node/"+name, reasonOf(r, q.Reason), func(x *txn) error {
		if _, err := x.Get(prefixNode + name); err != nil {
			return notFound("no node %q", clip(name))
		}
		if err := ignoreNotFound(x.Delete(prefixAck + name)); err != nil { // published on etcd (ackshare.go)
			return err
		}
		return x.Delete(prefixNode + name)
	})
	if err != nil {
		return 0, nil, err
	}
	// The tailer does this too (for other registry processes), maybe first; here it is at once.
	// Either way the streams open before the delete are the ones it closed.
	n := max(open, s.closeStreams(name, errNodeRemoved))
	return http.StatusOK, registryapi.RemovedNode{Name: name, StreamsClosed: n, Outcome: registryapi.Outcome{Changed: true}}, nil
}
