package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// signinData is the sign-in pages' data.
type signinData struct {
	Mail, Code, OIDC bool
	User             string // prefilled
}

// signinCSRF returns the sign-in forms' token, from the cookie or a new one.
func (p *Portal) signinCSRF(w http.ResponseWriter, r *http.Request) (string, error) {
	if c, err := r.Cookie(CookieSignIn); err == nil && len(c.Value) == 43 {
		return c.Value, nil
	}
	v, err := p.newSecret()
	if err != nil {
		return "", err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieSignIn, Value: v, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
	return v, nil
}

func (p *Portal) signinData(user string) signinData {
	return signinData{Mail: p.cfg.Has(SignInMail), Code: p.cfg.Has(SignInCode), OIDC: p.cfg.Has(SignInOIDC), User: user}
}

func (p *Portal) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, ok, err := p.session(r); err != nil {
		p.fail(w, r, "read the session", err)
		return
	} else if ok {
		http.Redirect(w, r, "/portal/tokens", http.StatusSeeOther)
		return
	}
	v := view{Title: "Sign in", Data: p.signinData("")}
	switch {
	case r.URL.Query().Get("signedout") != "":
		v.Notice = "You are signed out."
	case r.URL.Query().Get("expired") != "":
		v.Notice = "Your session has ended. Sign in again."
	}
	p.signinRender(w, r, http.StatusOK, "signin", v)
}

// signinRender renders a sign-in page with the sign-in forms' CSRF token.
func (p *Portal) signinRender(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	csrf, err := p.signinCSRF(w, r)
	if err != nil {
		p.fail(w, r, "sign-in token", err)
		return
	}
	v.CSRF = csrf
	p.render(w, r, status, page, v)
}

// signinForm reads a sign-in POST: its method must be on, its CSRF token match the cookie,
// and the client address be within its limit. It answers the refusals itself.
func (p *Portal) signinForm(w http.ResponseWriter, r *http.Request, method string) (user string, ok bool) {
	if !p.cfg.Has(method) {
		p.errorPage(w, r, http.StatusNotFound, nil, "This way of signing in is not offered here.")
		return "", false
	}
	if err := p.parseForm(w, r); err != nil {
		p.errorPage(w, r, http.StatusBadRequest, nil, "The form could not be read.")
		return "", false
	}
	c, err := r.Cookie(CookieSignIn)
	if err != nil || !equal(r.PostForm.Get("csrf"), c.Value) {
		p.log.Warn("portal sign-in refused: wrong CSRF token", "client", clientAddr(r))
		p.errorPage(w, r, http.StatusForbidden, nil, "This form has expired or did not come from this site. Open the sign-in page again.")
		return "", false
	}
	if ok, wait := p.limit.allow(clientAddr(r), p.now()); !ok {
		p.log.Warn("portal sign-in refused: too many attempts from the address", "client", clientAddr(r))
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		p.errorPage(w, r, http.StatusTooManyRequests, nil,
			fmt.Sprintf("Too many sign-in attempts from your address; try again in %d minutes.", int(wait.Minutes())+1))
		return "", false
	}
	user = strings.TrimSpace(r.PostForm.Get("user"))
	if token.ValidUser(user) != nil {
		v := view{Title: "Sign in", Error: "Type your user name, as you log in to the cluster.", Data: p.signinData("")}
		p.signinRender(w, r, http.StatusBadRequest, "signin", v)
		return "", false
	}
	return user, true
}

// signinMail mails a code; the page says the same whatever happened.
func (p *Portal) signinMail(w http.ResponseWriter, r *http.Request) {
	user, ok := p.signinForm(w, r, SignInMail)
	if !ok {
		return
	}
	if err := p.be.MailSignInCode(r.Context(), user, clientAddr(r)); err != nil {
		p.log.Info("portal sign-in code not mailed", "user", user, "client", clientAddr(r), "err", err)
	}
	p.mailCodePage(w, r, http.StatusOK, user, "")
}

func (p *Portal) mailCodePage(w http.ResponseWriter, r *http.Request, status int, user, errMsg string) {
	v := view{Title: "Check your mail", Error: errMsg, Data: p.signinData(user),
		Notice: "If " + user + " has an account here with a mail address, a sign-in code is on its way. It works once, for 30 minutes."}
	if errMsg != "" {
		v.Notice = ""
	}
	p.signinRender(w, r, status, "mailcode", v)
}

// signinMailCode checks the mailed code.
func (p *Portal) signinMailCode(w http.ResponseWriter, r *http.Request) {
	user, ok := p.signinForm(w, r, SignInMail)
	if !ok {
		return
	}
	if err := p.be.SignIn(r.Context(), user, r.PostForm.Get("code"), true); err != nil {
		p.signinRefused(r, user, err)
		p.mailCodePage(w, r, http.StatusForbidden, user, "That code was not accepted. Codes work once, for 30 minutes; ask for a new one if needed.")
		return
	}
	p.signedIn(w, r, user, SignInMail, nil)
}

// signinCode checks a code of a token or a backup code.
func (p *Portal) signinCode(w http.ResponseWriter, r *http.Request) {
	user, ok := p.signinForm(w, r, SignInCode)
	if !ok {
		return
	}
	if err := p.be.SignIn(r.Context(), user, r.PostForm.Get("code"), false); err != nil {
		p.signinRefused(r, user, err)
		v := view{Title: "Sign in", Data: p.signinData(user),
			Error: "That code was not accepted. Type the code your app shows now, or an unused backup code."}
		p.signinRender(w, r, http.StatusForbidden, "signin", v)
		return
	}
	p.signedIn(w, r, user, SignInCode, nil)
}

// signinRefused logs a refused sign-in; the user is told the same whatever the reason (an
// unknown user, a wrong code, a lock).
func (p *Portal) signinRefused(r *http.Request, user string, err error) {
	p.log.Warn("portal sign-in refused", "user", user, "client", clientAddr(r), "err", err)
}

func (p *Portal) signedIn(w http.ResponseWriter, r *http.Request, user, method string, groups []string) {
	if err := p.startSession(w, r, user, method, groups); err != nil {
		p.fail(w, r, "start a session", err)
		return
	}
	http.Redirect(w, r, "/portal/tokens", http.StatusSeeOther)
}

func (p *Portal) oidcStart(w http.ResponseWriter, r *http.Request) {
	if !p.cfg.Has(SignInOIDC) || p.oidc == nil {
		p.errorPage(w, r, http.StatusNotFound, nil, "This way of signing in is not offered here.")
		return
	}
	if ok, wait := p.limit.allow(clientAddr(r), p.now()); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		p.errorPage(w, r, http.StatusTooManyRequests, nil,
			fmt.Sprintf("Too many sign-in attempts from your address; try again in %d minutes.", int(wait.Minutes())+1))
		return
	}
	if err := p.oidc.Start(w, r, "/portal/tokens"); err != nil {
		p.fail(w, r, "start an OpenID Connect sign-in", err)
	}
}

// oidcCallback finishes the provider's sign-in. The SameSite=Strict cookie is not sent on the
// provider's redirect, so the answer is a page that goes on same-site (meta refresh).
func (p *Portal) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if !p.cfg.Has(SignInOIDC) || p.oidc == nil {
		p.errorPage(w, r, http.StatusNotFound, nil, "This way of signing in is not offered here.")
		return
	}
	user, groups, returnTo, err := p.oidc.Finish(r)
	if err != nil {
		p.log.Warn("portal OpenID Connect sign-in refused", "client", clientAddr(r), "err", err)
		p.errorPage(w, r, http.StatusForbidden, nil, "The sign-in with your identity provider did not succeed: "+sentence(err.Error()))
		return
	}
	known, err := p.be.Known(r.Context(), user)
	if err != nil {
		p.fail(w, r, "look up the user", err)
		return
	}
	if !known {
		p.log.Warn("portal OpenID Connect sign-in refused: user not known to the registry", "user", user, "client", clientAddr(r))
		p.errorPage(w, r, http.StatusForbidden, nil, "Your identity provider signed you in, but "+user+" has no account here. Contact the helpdesk.")
		return
	}
	if err := p.startSession(w, r, user, SignInOIDC, groups); err != nil {
		p.fail(w, r, "start a session", err)
		return
	}
	if u, err := url.Parse(returnTo); err != nil || returnTo == "" || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(u.Path, "/portal/") {
		returnTo = "/portal/tokens"
	}
	p.render(w, r, http.StatusOK, "continue", view{Title: "Signed in", Data: returnTo})
}
