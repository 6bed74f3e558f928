package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
)

// Resealer re-seals a record under the primary key; *seal.Keyring is one.
type Resealer interface {
	Reseal(sealed, aad []byte) ([]byte, bool, error)
}

// resealChunk is how many records one revision of a rotation re-seals.
const resealChunk = 1000

// ResealReport says what Reseal did.
type ResealReport struct {
	Records   int // records looked at
	Resealed  int // records re-sealed under the primary key
	Revisions int
}

// Reseal walks every record and re-seals those not under k's primary key, in chunks of
// resealChunk records, each one kv.Update (one revision) with an audit record by actor. Nodes see
// nothing: the values they receive do not change.
func Reseal(ctx context.Context, st kv.Store, k Resealer, actor string, now func() time.Time) (ResealReport, error) {
	var rep ResealReport
	after := ""
	for {
		n, seen, last := 0, 0, after
		_, err := st.Update(ctx, func(t kv.Txn) error {
			n, seen, last = 0, 0, after
			err := t.Range(prefixRec, func(kvp kv.KeyValue) error {
				if kvp.Key <= after {
					return nil
				}
				if n >= resealChunk {
					return errStop
				}
				seen, last = seen+1, kvp.Key
				w, err := decodeWrapper(kvp.Value)
				if err != nil {
					return fmt.Errorf("%s: %w", kvp.Key, err)
				}
				sealed, changed, err := k.Reseal(w.Sealed, []byte(strings.TrimPrefix(kvp.Key, prefixRec)))
				if err != nil {
					return fmt.Errorf("%s: %w", kvp.Key, err)
				}
				if !changed {
					return nil
				}
				w.Sealed = sealed
				b, err := json.Marshal(w)
				if err != nil {
					return err
				}
				n++
				return t.Put(kvp.Key, b)
			})
			if err != nil && !errors.Is(err, errStop) {
				return err
			}
			if n == 0 {
				return nil
			}
			return (&txn{Txn: t}).audit(now(), actor, "key.rotate", "records",
				fmt.Sprintf("%d records re-sealed under the primary key", n))
		})
		if err != nil {
			return rep, fmt.Errorf("re-seal after %q: %w", after, err)
		}
		rep.Records += seen
		rep.Resealed += n
		if n > 0 {
			rep.Revisions++
		}
		if last == after {
			return rep, nil
		}
		after = last
	}
}
