package enroll

import (
	"strings"
	"testing"
)

// TestSkewAdvice: after a code from ahead of time, the user is told how long the used-up codes
// last; after one from behind, to type the next code now.
func TestSkewAdvice(t *testing.T) {
	t.Parallel()
	for skew, want := range map[int]string{
		-90: "about 90 seconds behind. Let the phone set its time automatically, then type the code it shows now.",
		60:  "about 60 seconds ahead. Let the phone set its time automatically, then type the code it shows in about 90 seconds (the early code used up the codes before its time).",
	} {
		if got := SkewAdvice(skew); !strings.HasSuffix(got, want) {
			t.Errorf("SkewAdvice(%d) = %q, want it to end %q", skew, got, want)
		}
	}
}
