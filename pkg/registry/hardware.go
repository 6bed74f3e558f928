package registry

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Hardware tokens no user holds yet (token.Hardware) live under their own prefixes, outside
// "rec/": no node ever receives one, so an unassigned token cannot log anyone in.
const (
	// prefixHardware + SERIAL: an unassigned hardware token, sealed (hardwareRecord).
	prefixHardware = "hw/"
	// prefixAssigned + SERIAL: USER "/" ID of the token it was assigned as. A hint for finding
	// it: the token itself (its Serial) is the truth, so a hint whose token is gone is stale.
	prefixAssigned = "hwa/"
	// maxHardwareImport bounds the tokens of one import (one transaction).
	maxHardwareImport = 20000
)

// hardwareRecord is the kv value of an unassigned hardware token: its JSON sealed with the
// keyring, the kv key as additional data.
type hardwareRecord struct {
	Sealed []byte `json:"sealed"`
}

func (x *txn) hardware(serial string) (token.Hardware, error) {
	var h token.Hardware
	key := prefixHardware + serial
	kvp, err := x.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return h, notFound("no unassigned hardware token with serial %q", clip(serial))
	}
	if err != nil {
		return h, err
	}
	var rec hardwareRecord
	if err := json.Unmarshal(kvp.Value, &rec); err != nil {
		return h, fmt.Errorf("decode %s: %w", key, err)
	}
	v, err := x.s.sealer.Open(rec.Sealed, []byte(key))
	if err != nil {
		return h, fmt.Errorf("open %s: %w", key, err)
	}
	return h, json.Unmarshal(v, &h)
}

func (x *txn) putHardware(h token.Hardware) error {
	if err := h.Validate(); err != nil {
		return badRequest("%v", err)
	}
	key := prefixHardware + h.Serial
	v, err := json.Marshal(h)
	if err != nil {
		return err
	}
	sealed, err := x.s.sealer.Seal(v, []byte(key))
	clear(v)
	if err != nil {
		return fmt.Errorf("seal %s: %w", key, err)
	}
	return x.putJSON(key, hardwareRecord{Sealed: sealed})
}

// assigned returns the token that the hardware token serial was assigned as, if it still is.
func (x *txn) assigned(serial string) (token.Token, bool, error) {
	var where string
	if err := x.getJSON(prefixAssigned+serial, &where); errors.Is(err, kv.ErrNotFound) {
		return token.Token{}, false, nil
	} else if err != nil {
		return token.Token{}, false, err
	}
	user, id, _ := strings.Cut(where, "/")
	_, t, err := x.token(user, id)
	if isNotFound(err) || (err == nil && t.Serial != serial) {
		return token.Token{}, false, nil
	}
	return t, err == nil, err
}

// importHardware answers POST /v1/admin/import/hardware (registryapi.HardwareImport): the tokens
// are kept unassigned. The whole request is checked first; with any token that cannot be
// imported (invalid, or a serial here already with another seed) nothing is written. A serial
// here with the same seed is skipped, so importing a file twice adds nothing. One revision and one
// audit record for the import.
func (s *Server) importHardware(r *http.Request, actor string, body []byte) (int, any, error) {
	var q registryapi.HardwareImport
	if err := decodeStrict(body, &q); err != nil {
		return 0, nil, badRequest("hardware import: %v", err)
	}
	defer func() {
		for i := range q.Tokens {
			clear(q.Tokens[i].Secret)
		}
	}()
	if len(q.Tokens) > maxHardwareImport {
		return 0, nil, badRequest("at most %d hardware tokens per import", maxHardwareImport)
	}
	rep := registryapi.HardwareReport{Imported: []token.HardwareInfo{}, Already: []string{}, Invalid: []registryapi.HardwareProblem{}}
	now := s.now().UTC().Truncate(1e9)
	seen := map[string]bool{}
	for i := range q.Tokens {
		h := &q.Tokens[i]
		h.Imported = now
		bad := ""
		if err := h.Validate(); err != nil {
			bad = err.Error()
		} else if seen[h.Serial] {
			bad = "serial repeated"
		} else if h.User != "" && !validName(h.User, maxNameLen) {
			bad = "user name is not valid"
		}
		seen[h.Serial] = true
		if bad != "" {
			rep.Invalid = append(rep.Invalid, registryapi.HardwareProblem{Line: i + 1, Serial: clip(h.Serial), Msg: bad})
		}
	}
	if len(rep.Invalid) > 0 {
		rep.Error = fmt.Sprintf("%d hardware tokens cannot be imported; nothing was imported", len(rep.Invalid))
		return http.StatusBadRequest, rep, nil
	}
	_, err := s.change(r.Context(), actor, "import.hardware", fmt.Sprintf("%d hardware tokens", len(q.Tokens)), reasonOf(r, q.Reason), func(x *txn) error {
		rep.Imported, rep.Already, rep.Invalid = rep.Imported[:0], rep.Already[:0], rep.Invalid[:0]
		var add []token.Hardware
		for i, h := range q.Tokens {
			var have []byte
			if old, err := x.hardware(h.Serial); err == nil {
				have = old.Secret
			} else if !isNotFound(err) {
				return err
			} else if t, ok, err := x.assigned(h.Serial); err != nil {
				return err
			} else if ok {
				have = t.Secret
			}
			switch {
			case have == nil:
				add = append(add, h)
			case len(have) == len(h.Secret) && subtle.ConstantTimeCompare(have, h.Secret) == 1:
				rep.Already = append(rep.Already, h.Serial)
			default:
				rep.Invalid = append(rep.Invalid, registryapi.HardwareProblem{Line: i + 1, Serial: h.Serial,
					Msg: "this serial was imported before with another seed"})
			}
		}
		if len(rep.Invalid) > 0 || len(add) == 0 || q.DryRun {
			for _, h := range add {
				rep.Imported = append(rep.Imported, h.Info())
			}
			return errNothing
		}
		for _, h := range add {
			if err := x.putHardware(h); err != nil {
				return err
			}
			rep.Imported = append(rep.Imported, h.Info())
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNothing) {
		return 0, nil, err
	}
	if len(rep.Invalid) > 0 {
		rep.Imported = []token.HardwareInfo{}
		rep.Error = fmt.Sprintf("%d hardware tokens cannot be imported; nothing was imported", len(rep.Invalid))
		return http.StatusBadRequest, rep, nil
	}
	return http.StatusOK, rep, nil
}

// listHardware answers GET /v1/admin/hardware: the unassigned hardware tokens, in serial order,
// without their seeds.
func (s *Server) listHardware(r *http.Request, _ string, _ []byte) (int, any, error) {
	out := []token.HardwareInfo{}
	err := s.store.View(r.Context(), func(_ int64, tx kv.Txn) error {
		out = out[:0]
		x := &txn{Txn: tx, s: s}
		return x.Range(prefixHardware, func(kvp kv.KeyValue) error {
			h, err := x.hardware(strings.TrimPrefix(kvp.Key, prefixHardware))
			if err != nil {
				return err
			}
			clear(h.Secret)
			out = append(out, h.Info())
			return nil
		})
	})
	return http.StatusOK, out, err
}

// assignHardware answers POST /v1/admin/users/{name}/hardware (registryapi.HardwareAssign): the
// code the device shows is checked with the token rules (enroll.FinishCode: the window of a
// proof, and the clock-skew hint); only a verified code makes the unassigned token the user's,
// active, with the code's time step used up (Token.UsedStep: no node accepts it again). A code
// that does not verify changes nothing and is answered with the status; the token stays
// unassigned.
func (s *Server) assignHardware(r *http.Request, actor string, body []byte) (int, any, error) {
	var q registryapi.HardwareAssign
	if err := decodeStrict(body, &q); err != nil {
		return 0, nil, badRequest("hardware assignment: %v", err)
	}
	name := r.PathValue("name")
	if token.ValidSerial(q.Serial) != nil {
		return 0, nil, badRequest("serial: 1 to 64 printable characters without spaces or '/'")
	}
	var out registryapi.HardwareAssigned
	_, err := s.change(r.Context(), actor, "token.assign", "user/"+name+"/hardware/"+q.Serial, reasonOf(r, q.Reason), func(x *txn) error {
		u, err := x.user(name)
		if err != nil {
			return err
		}
		h, err := x.hardware(q.Serial)
		if isNotFound(err) {
			if t, ok, aerr := x.assigned(q.Serial); aerr != nil {
				return aerr
			} else if ok {
				return conflict("hardware token %q is assigned to %q already (token %s): unassign it first", clip(q.Serial), clip(t.User), t.ID)
			}
		}
		if err != nil {
			return err
		}
		toks, err := x.tokens(name)
		if err != nil {
			return err
		}
		id, err := s.newTokenID(toks)
		if err != nil {
			return err
		}
		now := s.now()
		t := h.Assign(name, id, now)
		m := enroll.FinishCode(&t, q.Code, now, proofWindow, 0)
		switch m.Status {
		case token.OK:
		case token.Skew:
			out = registryapi.HardwareAssigned{Status: registryapi.StatusClockSkew, SkewSeconds: m.SkewSeconds}
			return errNothing
		default:
			out = registryapi.HardwareAssigned{Status: registryapi.StatusWrongCode}
			return errNothing
		}
		t.State, t.UsedStep = token.Active, m.Step
		if err := x.Delete(prefixHardware + q.Serial); err != nil {
			return err
		}
		if err := x.putToken(u, t); err != nil {
			return err
		}
		out = registryapi.HardwareAssigned{Status: registryapi.StatusActive, Token: t.Info()}
		return x.putJSON(prefixAssigned+q.Serial, name+"/"+id)
	})
	if errors.Is(err, errNothing) {
		return http.StatusOK, out, nil
	}
	if err != nil {
		return 0, nil, err
	}
	s.notify(r.Context(), name, "new token added", fmt.Sprintf("The hardware token %s was assigned to your account as token %q (id %s); it is active.",
		q.Serial, out.Token.Name, out.Token.ID), "administrator "+actor)
	return http.StatusOK, out, nil
}

// unassignHardware answers POST /v1/admin/users/{name}/tokens/{id}/unassign: the user's hardware
// token (one with a serial) is taken from them and kept unassigned again, for another user.
func (s *Server) unassignHardware(r *http.Request, actor string, body []byte) (int, any, error) {
	var q reasonRequest
	if err := decodeOptional(body, &q); err != nil {
		return 0, nil, err
	}
	name, id := r.PathValue("name"), r.PathValue("id")
	var t token.Token
	_, err := s.change(r.Context(), actor, "token.unassign", "token/"+name+"/"+id, reasonOf(r, q.Reason), func(x *txn) error {
		u, tok, err := x.token(name, id)
		if err != nil {
			return err
		}
		if tok.Serial == "" {
			return conflict("token %s of %q is not a hardware token (it has no serial)", clip(id), clip(name))
		}
		t = tok
		if err := x.deleteToken(u, id); err != nil {
			return err
		}
		if err := ignoreNotFound(x.Delete(prefixAssigned + tok.Serial)); err != nil {
			return err
		}
		return x.putHardware(tok.Unassign(s.now()))
	})
	if err != nil {
		return 0, nil, err
	}
	s.notify(r.Context(), name, "token removed", fmt.Sprintf("The hardware token %s (token %q, id %s) was taken from your account; its codes no longer work for you.",
		t.Serial, t.Name, t.ID), "administrator "+actor)
	return http.StatusOK, t.Info(), nil
}

// resealHardware returns an unassigned hardware token's record sealed under k's primary key, or
// nil if it already is (a key rotation, rotate.go). AES-GCM with the kv key as additional data
// authenticates it; it has no MAC of its own.
func resealHardware(k Resealer, kvp kv.KeyValue) ([]byte, error) {
	var rec hardwareRecord
	if err := json.Unmarshal(kvp.Value, &rec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kvp.Key, err)
	}
	sealed, changed, err := k.Reseal(rec.Sealed, []byte(kvp.Key))
	if err != nil || !changed {
		return nil, err
	}
	return json.Marshal(hardwareRecord{Sealed: sealed})
}
