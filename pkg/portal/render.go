package portal

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/pam-totp/pam-totp/pkg/refusal"
)

// view is what every page gets.
type view struct {
	Site, Contact string
	Title         string
	CSRF          string    // the form token: the session's, or the sign-in forms'
	S             *signedIn // nil before sign-in
	Error, Notice string
	Data          any
}

var pageNames = []string{"signin", "mailcode", "continue", "tokens", "new", "pending", "active", "backup", "error", "admin"}

func (p *Portal) parseTemplates() error {
	funcs := template.FuncMap{
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ms":  func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	}
	p.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("parse template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return nil
}

// render writes page with status; the session's CSRF token goes into its forms.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	v.Site, v.Contact = p.cfg.SiteName, p.cfg.Contact
	if v.S != nil {
		v.CSRF = v.S.CSRF
	}
	var b bytes.Buffer
	if err := p.pages[page].Execute(&b, v); err != nil {
		p.log.Error("portal: render page", "page", page, "path", r.URL.Path, "err", err)
		http.Error(w, "Something went wrong on our side; try again in a minute.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// errorPage answers with a page that says msg.
func (p *Portal) errorPage(w http.ResponseWriter, r *http.Request, status int, s *signedIn, msg string) {
	p.render(w, r, status, "error", view{Title: http.StatusText(status), S: s, Error: msg})
}

// userMessage is a refusal's sentence for the user.
func userMessage(err error) (string, bool) {
	re, ok := refusal.As(err)
	if !ok {
		return "", false
	}
	return sentence(re.Message), true
}

// statusOf is the HTTP status of a refusal (500 for any other error).
func statusOf(err error) int {
	re, ok := refusal.As(err)
	if !ok {
		return http.StatusInternalServerError
	}
	return re.Kind.HTTPStatus()
}
