package main

// What both backends print the same way.

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
)

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

// tokenTable prints tokens as token list does.
func tokenTable(w io.Writer, toks []token.Info) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tID\tNAME\tALGORITHM\tDIGITS\tPERIOD\tSTATE\tCREATED\tLAST USED")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", t.User, t.ID, t.Name, t.Algorithm, t.Digits,
			t.Period, t.State, stamp(t.Created), stamp(t.LastUsed))
	}
	return tw.Flush()
}

// writeListing writes items as a JSON list (empty, never null) with asJSON, or the sentence none
// when there are no items. It returns false when the caller still writes its table.
func writeListing[T any](w io.Writer, items []T, asJSON bool, none string) (bool, error) {
	if asJSON {
		if items == nil {
			items = []T{}
		}
		return true, writeJSON(w, items)
	}
	if len(items) == 0 {
		fmt.Fprintln(w, none)
		return true, nil
	}
	return false, nil
}

// changeOptions are the flags of every verb that changes state: --json, and --if-exists for
// the removals.
type changeOptions struct {
	asJSON, ifExists bool
}

// changeFlags adds --json (and with removal, --if-exists) to a verb that changes state.
func changeFlags(cmd *cobra.Command, removal bool) *changeOptions {
	o := &changeOptions{}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, `JSON output, with "changed": true or false`)
	if removal {
		cmd.Flags().BoolVar(&o.ifExists, "if-exists", false, "succeed, unchanged, when there is nothing to remove")
	}
	return o
}

// writeChange writes what a verb that changes state did; the one convention of them all
// (docs/registry-admin.md, "Running a command twice"): when the desired state already held, the
// verb changed nothing, says "unchanged" and exits 0 all the same; with --json it writes answer,
// which carries "changed": true or false (registryapi.Outcome), instead of the sentences say
// writes.
func writeChange(w io.Writer, o *changeOptions, answer any, say func(w io.Writer)) error {
	if o.asJSON {
		return writeJSON(w, answer)
	}
	say(w)
	return nil
}

// absent is the answer of a removal --if-exists of something that is not there.
func absent(w io.Writer, o *changeOptions, err error, answer any, what string) error {
	if !o.ifExists || !(errors.Is(err, store.ErrNotFound) || errors.Is(err, adminclient.ErrNotFound)) {
		return err
	}
	return writeChange(w, o, answer, func(w io.Writer) { fmt.Fprintf(w, "%s unchanged: absent.\n", what) })
}

// writeTokenChanged says what token remove, disable or enable did; noneActive: the user has no
// active token left.
func writeTokenChanged(w io.Writer, o *changeOptions, verb string, t token.Info, u string, changed, noneActive bool) error {
	if t.User == "" {
		t.User = u
	}
	t = cleanToken(t)
	if o.asJSON {
		return writeJSON(w, registryapi.TokenResult{Info: t, Outcome: registryapi.Outcome{Changed: changed}})
	}
	past := map[string]string{"remove": "removed", "disable": "disabled", "enable": "enabled"}[verb]
	if !changed {
		fmt.Fprintf(w, "Token %s (%q) of %s unchanged: already %s.\n", t.ID, t.Name, token.Clean(u), past)
		return nil
	}
	fmt.Fprintf(w, "Token %s (%q) of %s %s.\n", t.ID, t.Name, token.Clean(u), past)
	if verb != "enable" && noneActive {
		fmt.Fprintf(w, "%s has no active token left: logins that need a code are denied, also during enrollment grace (backup codes\nstill work), and the user cannot enroll a new first token until you enable a token or reset them.\n",
			token.Clean(u))
	}
	return nil
}

func writeBackupCodes(w io.Writer, u string, codes []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "New backup codes for %s (any older codes no longer work):\n\n", token.Clean(u))
	for i, c := range codes {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, token.Clean(c))
	}
	b.WriteString("\nEach code works once, in place of a code from the app. Store them somewhere safe\n" +
		"(printed, or in a password manager): they are shown only this once.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// gaImport is what an import of a google-authenticator file did.
type gaImport struct {
	id                string
	period            int
	already           bool
	scratch, replaced int
	ignored           []string
}

// writeGAImport reports an import of path for u; admin is how to run totp-admin for backup-codes.
func writeGAImport(w io.Writer, r gaImport, u, path, admin string) {
	u = token.Clean(u)
	if r.already {
		fmt.Fprintf(w, "%s already has this token (%s); nothing imported.\n", u, token.Clean(r.id))
		return
	}
	fmt.Fprintf(w, "Imported token %s (%q) for %s, active, %d-second steps.\n", token.Clean(r.id), tokenimport.GAName, u, r.period)
	if r.scratch > 0 {
		fmt.Fprintf(w, "Imported %d scratch codes as backup codes", r.scratch)
		if r.replaced > 0 {
			fmt.Fprintf(w, " (replacing %d backup codes %s had)", r.replaced, u)
		}
		fmt.Fprintf(w, ". They are 8 digits, weaker than ours: consider `%s backup-codes %s`.\n", admin, u)
	}
	if len(r.ignored) > 0 {
		fmt.Fprintf(w, "Ignored options (pam_totp.conf decides these for everyone): %s.\n", strings.Join(cleanAll(r.ignored), ", "))
	}
	fmt.Fprintf(w, "Once logins work with pam_totp, remove %s.\n", token.Clean(path))
}
