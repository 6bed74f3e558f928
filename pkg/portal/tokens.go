package portal

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"rsc.io/qr"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// tokensData is the token list's data.
type tokensData struct {
	Tokens    []Token
	HasActive bool
	Admin     bool // the session may see the admin overview
}

func (p *Portal) tokensPage(w http.ResponseWriter, r *http.Request, s signedIn) {
	p.tokensRender(w, r, s, http.StatusOK, "", r.URL.Query().Get("notice"))
}

// saved answers form#backup-saved: the codes are saved; back to the list.
func (p *Portal) saved(w http.ResponseWriter, r *http.Request, _ signedIn) {
	http.Redirect(w, r, "/portal/tokens?notice=saved", http.StatusSeeOther)
}

// notices the token list shows after a change (by key, so the URL carries no free text).
var notices = map[string]string{
	"renamed": "The token was renamed.",
	"removed": "The token was removed; its codes no longer work.",
	"saved":   "Your token is ready. Keep your backup codes somewhere safe.",
}

func (p *Portal) tokensRender(w http.ResponseWriter, r *http.Request, s signedIn, status int, errMsg, notice string) {
	toks, err := p.be.Tokens(r.Context(), s.User)
	if err != nil {
		p.fail(w, r, "list tokens", err)
		return
	}
	d := tokensData{Tokens: toks, Admin: s.admin(&p.cfg)}
	for _, t := range toks {
		d.HasActive = d.HasActive || t.State == "active"
	}
	p.render(w, r, status, "tokens", view{Title: "Your tokens", S: &s, Error: errMsg, Notice: notices[notice], Data: d})
}

// needsProof says whether a new token of the user needs a proof: when one is active.
func (p *Portal) needsProof(r *http.Request, s signedIn) (bool, error) {
	toks, err := p.be.Tokens(r.Context(), s.User)
	if err != nil {
		return false, err
	}
	for _, t := range toks {
		if t.State == "active" {
			return true, nil
		}
	}
	return false, nil
}

type newTokenData struct {
	Proof bool
	Name  string
}

func (p *Portal) newTokenPage(w http.ResponseWriter, r *http.Request, s signedIn) {
	proof, err := p.needsProof(r, s)
	if err != nil {
		p.fail(w, r, "list tokens", err)
		return
	}
	p.render(w, r, http.StatusOK, "new", view{Title: "Add a token", S: &s, Data: newTokenData{Proof: proof}})
}

func (p *Portal) newToken(w http.ResponseWriter, r *http.Request, s signedIn) {
	name := strings.TrimSpace(r.PostForm.Get("name"))
	e, err := p.be.Begin(r.Context(), s.User, name, strings.TrimSpace(r.PostForm.Get("proof")), s.identified())
	if err != nil {
		proof, perr := p.needsProof(r, s)
		if perr != nil {
			p.fail(w, r, "list tokens", perr)
			return
		}
		if msg, ok := userMessage(err); ok {
			p.log.Warn("portal add token refused", "user", s.User, "client", clientAddr(r), "err", err)
			p.render(w, r, statusOf(err), "new", view{Title: "Add a token", S: &s, Error: msg, Data: newTokenData{Proof: proof, Name: name}})
			return
		}
		p.fail(w, r, "begin an enrollment", err)
		return
	}
	http.Redirect(w, r, "/portal/tokens/pending/"+url.PathEscape(e.ID), http.StatusSeeOther)
}

// tokenGet routes GET /portal/tokens/pending/{id}, /portal/tokens/{id}/active and
// /portal/tokens/{id}/nodes.
func (p *Portal) tokenGet(w http.ResponseWriter, r *http.Request, s signedIn) {
	a, b := r.PathValue("a"), r.PathValue("b")
	switch {
	case a == "pending":
		p.pendingPage(w, r, s, b, http.StatusOK, "")
	case b == "active":
		p.activePage(w, r, s, a, nil)
	case b == "nodes":
		p.nodesJSON(w, r, s, a)
	default:
		p.errorPage(w, r, http.StatusNotFound, &s, "There is no such page.")
	}
}

// pendingData is the enrollment page's data: the secret, shown only here.
type pendingData struct {
	ID       string
	QR       template.URL // data:image/png;base64,...
	URI      template.URL // otpauth://...
	Base32   string       // in groups of 4
	Hex      string
	Expires  time.Time
	Minutes  int
	Verified bool
}

func (p *Portal) pendingPage(w http.ResponseWriter, r *http.Request, s signedIn, id string, status int, errMsg string) {
	e, err := p.be.Enrollment(r.Context(), s.User, id)
	if err != nil {
		p.refused(w, r, &s, "read a pending token", err)
		return
	}
	d, err := pendingOf(e, p.now())
	if err != nil {
		p.fail(w, r, "render the QR code", err)
		return
	}
	p.render(w, r, status, "pending", view{Title: "Add a token: scan the code", S: &s, Error: errMsg, Data: d})
}

// pendingOf is the enrollment page's data of e: QR code PNG, URI, secret in base32 and hex.
func pendingOf(e registryapi.Enrollment, now time.Time) (pendingData, error) {
	c, err := qr.Encode(e.URI, qr.M)
	if err != nil {
		return pendingData{}, err
	}
	c.Scale = 6
	raw, err := totp.DecodeSecret(e.Secret)
	if err != nil {
		return pendingData{}, err
	}
	var b32 bytes.Buffer
	for i, r := range e.Secret {
		if i > 0 && i%4 == 0 {
			b32.WriteByte(' ')
		}
		b32.WriteRune(r)
	}
	var hx bytes.Buffer
	for i, b := range raw {
		if i > 0 && i%4 == 0 {
			hx.WriteByte(' ')
		}
		hx.WriteString(hex.EncodeToString([]byte{b}))
	}
	return pendingData{ID: e.ID,
		QR:     template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(c.PNG())), //nolint:gosec // our own PNG
		URI:    template.URL(e.URI),                                                                 //nolint:gosec // made by enroll, otpauth scheme
		Base32: b32.String(), Hex: hx.String(), Expires: e.Expires,
		Minutes: max(1, int(e.Expires.Sub(now).Minutes()+0.5))}, nil
}

func (p *Portal) verify(w http.ResponseWriter, r *http.Request, s signedIn) {
	id := r.PathValue("id")
	f, err := p.be.Finish(r.Context(), s.User, id, strings.TrimSpace(r.PostForm.Get("code")), by(r))
	if err != nil {
		p.refused(w, r, &s, "finish an enrollment", err)
		return
	}
	switch f.Status {
	case registryapi.StatusActive:
	case registryapi.StatusWrongCode:
		p.pendingPage(w, r, s, id, http.StatusOK, enroll.WrongCodeAdvice)
		return
	case registryapi.StatusClockSkew:
		p.pendingPage(w, r, s, id, http.StatusOK, enroll.SkewAdvice(int(f.SkewS)))
		return
	case registryapi.StatusExpired:
		p.errorPage(w, r, http.StatusGone, &s, "This enrollment expired (it waits 10 minutes for its first code). Add the token again.")
		return
	default:
		p.fail(w, r, "finish an enrollment", errUnexpected(f.Status))
		return
	}
	if len(f.BackupCodes) == 0 {
		http.Redirect(w, r, "/portal/tokens/"+url.PathEscape(id)+"/active", http.StatusSeeOther)
		return
	}
	// The backup codes exist only in this answer: the page is rendered here, not redirected to.
	p.activePage(w, r, s, id, f.BackupCodes)
}

type errUnexpected string

func (e errUnexpected) Error() string { return "unexpected status " + token.Clean(string(e)) }

// activeData is the page after a verified code.
type activeData struct {
	ID            string
	Active, Total int
	Backup        *backupData
}

// backupData shows backup codes once.
type backupData struct {
	CSRF     string
	Codes    []string
	Download template.URL // data:text/plain,...
}

func backupOf(codes []string, csrf string) *backupData {
	text := strings.Join(codes, "\n") + "\n"
	return &backupData{CSRF: csrf, Codes: codes, Download: template.URL("data:text/plain;charset=utf-8," + url.PathEscape(text))} //nolint:gosec // our text
}

func (p *Portal) activePage(w http.ResponseWriter, r *http.Request, s signedIn, id string, codes []string) {
	toks, err := p.be.Tokens(r.Context(), s.User)
	if err != nil {
		p.fail(w, r, "list tokens", err)
		return
	}
	for _, t := range toks {
		if t.ID == id && t.State == "active" {
			d := activeData{ID: id, Active: t.Active, Total: t.Total}
			if codes != nil {
				d.Backup = backupOf(codes, s.CSRF)
			}
			p.render(w, r, http.StatusOK, "active", view{Title: "Token verified", S: &s, Data: d})
			return
		}
	}
	p.errorPage(w, r, http.StatusNotFound, &s, "You have no active token with this id.")
}

func (p *Portal) nodesJSON(w http.ResponseWriter, r *http.Request, s signedIn, id string) {
	active, total, err := p.be.Nodes(r.Context(), s.User, id)
	if err != nil {
		p.refused(w, r, &s, "count nodes", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"active": active, "total": total})
}

func (p *Portal) rename(w http.ResponseWriter, r *http.Request, s signedIn) {
	err := p.be.Rename(r.Context(), s.User, r.PathValue("id"), strings.TrimSpace(r.PostForm.Get("name")), by(r))
	if p.listRefusal(w, r, s, err) {
		return
	}
	http.Redirect(w, r, "/portal/tokens?notice=renamed", http.StatusSeeOther)
}

func (p *Portal) remove(w http.ResponseWriter, r *http.Request, s signedIn) {
	err := p.be.Remove(r.Context(), s.User, r.PathValue("id"), strings.TrimSpace(r.PostForm.Get("proof")), by(r))
	if p.listRefusal(w, r, s, err) {
		return
	}
	http.Redirect(w, r, "/portal/tokens?notice=removed", http.StatusSeeOther)
}

func (p *Portal) backupCodes(w http.ResponseWriter, r *http.Request, s signedIn) {
	codes, err := p.be.BackupCodes(r.Context(), s.User, strings.TrimSpace(r.PostForm.Get("proof")), by(r))
	if p.listRefusal(w, r, s, err) {
		return
	}
	p.render(w, r, http.StatusOK, "backup", view{Title: "New backup codes", S: &s, Data: backupOf(codes, s.CSRF)})
}

// listRefusal answers a refused change on the token list (unknown ids: 404). It says whether
// it answered.
func (p *Portal) listRefusal(w http.ResponseWriter, r *http.Request, s signedIn, err error) bool {
	if err == nil {
		return false
	}
	msg, ok := userMessage(err)
	if !ok {
		p.fail(w, r, "change a token", err)
		return true
	}
	p.log.Warn("portal change refused", "path", r.URL.Path, "user", s.User, "client", clientAddr(r), "err", err)
	p.tokensRender(w, r, s, statusOf(err), msg, "")
	return true
}

// adminPage is the read-only admin overview, for sessions of the admin group.
func (p *Portal) adminPage(w http.ResponseWriter, r *http.Request, s signedIn) {
	if !s.admin(&p.cfg) {
		p.log.Warn("portal admin overview refused: not in the admin group", "user", s.User, "client", clientAddr(r))
		p.errorPage(w, r, http.StatusNotFound, &s, "There is no such page.")
		return
	}
	o, err := p.be.Overview(r.Context(), s.User)
	if err != nil {
		p.fail(w, r, "read the overview", err)
		return
	}
	p.render(w, r, http.StatusOK, "admin", view{Title: "Overview", S: &s, Data: o})
}
