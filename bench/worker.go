//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/pkg/totp"
)

// workerEnv marks a process started by the coordinator as a worker.
const workerEnv = "PAMBENCH_WORKER"

// ctlFD is the worker's control channel to the coordinator (ready line, then the result).
// stdout and stderr stay free for whatever a PAM module prints.
const ctlFD = 3

// job is what one worker process is told to do.
type job struct {
	ConfDir string `json:"confdir"`
	Service string `json:"service"`
	// Users are the accounts this worker logs in as; no other worker uses them.
	Users []account `json:"users"`
	// Logins is how many PAM transactions to run.
	Logins int `json:"logins"`
	// WrongFrac of the logins send a wrong code, spread evenly.
	WrongFrac float64 `json:"wrong_frac"`
	// Window is the modules' window in steps either side of now; Period the step in seconds.
	Window int `json:"window"`
	Period int `json:"period"`
	// AnyCode: the module decides without looking at the code (pam_permit, policy off); every
	// login is expected to succeed.
	AnyCode bool `json:"any_code"`
	// MaxPerUser attempts per user within RateWindow seconds (kept below GA's RATE_LIMIT).
	MaxPerUser int `json:"max_per_user"`
	RateWindow int `json:"rate_window"`
	// MaxDuration stops the worker early (a slow module at a large size).
	MaxDuration time.Duration `json:"max_duration"`
	Seed        uint64        `json:"seed"`
	// Exec, when set, replaces the PAM transactions: fork and exec this argv Logins times.
	Exec []string `json:"exec,omitempty"`
	// Spawn execs with posix_spawn instead of fork.
	Spawn bool `json:"spawn,omitempty"`
}

// lastLogin is the last accepted login of a user, to check the module kept it (lost updates).
type lastLogin struct {
	Step uint64 `json:"step"`
	Code string `json:"code"`
}

// result is what a worker reports.
type result struct {
	Start, End int64 // unix nanoseconds of the first and the end of the last transaction
	// Lat is the time of each whole transaction (pam_start, pam_authenticate, pam_end), ns.
	Lat []int64
	// Auth is the time of pam_authenticate alone, ns.
	Auth         []int64
	Valid, Wrong int
	// WrongResults counts logins whose PAM result differs from the expected one;
	// Unexpected says what came back instead.
	WrongResults int
	Unexpected   map[string]int
	// Waits counts pauses for a fresh time step (no user had an unused valid code left).
	Waits    int
	WaitTime time.Duration
	// RSS in KiB from /proc/self/status: VmRSS before the first transaction and VmHWM (the
	// peak) after the last. getrusage's ru_maxrss is not used for the worker: Linux carries the
	// pre-exec image's peak (here the coordinator's) across execve into it.
	BaseRSS, MaxRSS int64
	// ChildRSS is RUSAGE_CHILDREN's ru_maxrss: the largest child's peak (pam_totp's helper), an
	// upper bound, since it includes what the child inherited from this process at fork.
	ChildRSS int64
	Last     map[string]lastLogin
	Err      string `json:",omitempty"`
}

// workerMain reads a job on stdin, says "ready" on the control fd, waits for "go" and runs it.
func workerMain() int {
	// libpam and the modules are not thread-aware; keep each transaction on one OS thread.
	runtime.LockOSThread()
	// The driver's own garbage must neither grow the host's RSS (which is measured) nor pause a
	// timed login: no automatic GC, an explicit one every gcEvery logins, outside the timing.
	debug.SetGCPercent(-1)
	syscall.CloseOnExec(ctlFD)
	ctl := os.NewFile(ctlFD, "control")
	in := bufio.NewReader(os.Stdin)
	var j job
	line, err := in.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &j)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pambench worker: read job: %v\n", err)
		return 2
	}
	base := procStatus("VmRSS")
	fmt.Fprintln(ctl, "ready")
	if l, err := in.ReadString('\n'); err != nil || l != "go\n" {
		fmt.Fprintf(os.Stderr, "pambench worker: no go signal: %v\n", err)
		return 2
	}
	var res result
	if len(j.Exec) > 0 {
		res.Start = time.Now().UnixNano()
		runtime.GC()
		lat, err := forkExecN(j.Exec, j.Logins, j.Spawn)
		res.End = time.Now().UnixNano()
		res.Lat, res.Valid = lat, len(lat)
		if err != nil {
			res.Err = err.Error()
		}
	} else {
		res = runLogins(&j)
	}
	res.BaseRSS = base
	res.MaxRSS = procStatus("VmHWM")
	res.ChildRSS = maxRSS(syscall.RUSAGE_CHILDREN)
	if err := json.NewEncoder(ctl).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "pambench worker: write result: %v\n", err)
		return 2
	}
	return 0
}

// maxRSS is getrusage's ru_maxrss in KiB.
func maxRSS(who int) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return -1
	}
	return ru.Maxrss
}

// procStatus returns a "kB" field of /proc/self/status (-1 when missing).
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// userState is what the worker knows of one account's standing with the module.
type userState struct {
	account
	last     uint64 // highest step the module has seen accepted (0: none)
	lastCode string
	fails    int // consecutive failures the module counted
	attempts []time.Time
}

// margin: near the end of a step, codes of the oldest step in the window are not used, so a
// code chosen now is still inside the window when the module checks it.
const margin = 5 * time.Second

// gcEvery is how many logins the worker runs between two garbage collections.
const gcEvery = 16

// maxConsecutiveFails keeps wrong codes far from any module's back-off.
const maxConsecutiveFails = 3

// conv answers every prompt with the current code and counts messages.
type conv struct {
	code     string
	prompts  int
	messages int
}

func (c *conv) RespondPAM(s pam.Style, msg string) (string, error) {
	switch s {
	case pam.PromptEchoOff, pam.PromptEchoOn:
		c.prompts++
		return c.code, nil
	case pam.ErrorMsg, pam.TextInfo:
		c.messages++
		return "", nil
	}
	return "", errors.New("unsupported conversation style")
}

func runLogins(j *job) result {
	res := result{Unexpected: map[string]int{}, Last: map[string]lastLogin{}}
	users := make([]*userState, len(j.Users))
	for i, a := range j.Users {
		users[i] = &userState{account: a}
	}
	if len(users) == 0 {
		res.Err = "no users"
		return res
	}
	rng := rand.New(rand.NewPCG(j.Seed, 0x70616d2d746f7470))
	params := totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: j.Period}
	next := 0
	wrongSoFar := 0
	deadline := time.Now().Add(j.MaxDuration)
	res.Start = time.Now().UnixNano()
	res.Lat = make([]int64, 0, j.Logins)
	res.Auth = make([]int64, 0, j.Logins)
	for i := 0; i < j.Logins; i++ {
		if j.MaxDuration > 0 && time.Now().After(deadline) {
			break
		}
		if i%gcEvery == 0 {
			runtime.GC()
		}
		// Wrong codes spread evenly: login i is wrong when the running share falls behind.
		wantWrong := !j.AnyCode && float64(wrongSoFar) < j.WrongFrac*float64(i+1)-0.5
		var (
			u    *userState
			code string
			step uint64
		)
		for u == nil {
			now := time.Now()
			for k := 0; k < len(users); k++ {
				c := users[(next+k)%len(users)]
				if !j.AnyCode && !c.rateOK(now, j) {
					continue
				}
				if j.AnyCode {
					u, code = c, "000000"
				} else if wantWrong {
					if c.fails >= maxConsecutiveFails {
						continue
					}
					u, code = c, c.wrongCode(rng, params, now, j)
				} else if s, cd, ok := c.validCode(params, now, j); ok {
					u, code, step = c, cd, s
				}
				if u != nil {
					next = (next + k + 1) % len(users)
					break
				}
			}
			if u == nil {
				// Every user has used all codes of the window: wait for the next step.
				p := time.Duration(j.Period) * time.Second
				wait := p - time.Duration(now.UnixNano())%p + 10*time.Millisecond
				res.Waits++
				res.WaitTime += wait
				time.Sleep(wait)
			}
		}
		u.attempts = append(u.attempts, time.Now())
		c := &conv{code: code}
		t0 := time.Now()
		tx, err := pam.StartConfDir(j.Service, u.Name, c, j.ConfDir)
		var ta, tb time.Time
		if err == nil {
			ta = time.Now()
			err = tx.Authenticate(0)
			tb = time.Now()
			if endErr := tx.End(); endErr != nil && err == nil {
				err = fmt.Errorf("pam_end: %w", endErr)
			}
		}
		t1 := time.Now()
		res.Lat = append(res.Lat, int64(t1.Sub(t0)))
		if !ta.IsZero() {
			res.Auth = append(res.Auth, int64(tb.Sub(ta)))
		}
		if wantWrong {
			res.Wrong++
			wrongSoFar++
			u.fails++
			if !errors.Is(err, pam.ErrAuth) {
				res.WrongResults++
				res.Unexpected["wrong code: "+describe(err)]++
			}
			continue
		}
		res.Valid++
		u.fails = 0
		if step > 0 {
			u.last, u.lastCode = step, code
		}
		if err != nil {
			res.WrongResults++
			res.Unexpected["valid code: "+describe(err)]++
			continue
		}
		if !j.AnyCode {
			res.Last[u.Name] = lastLogin{Step: step, Code: code}
		}
	}
	res.End = time.Now().UnixNano()
	return res
}

func describe(err error) string {
	if err == nil {
		return "success"
	}
	return err.Error()
}

// rateOK says whether one more attempt keeps the user under MaxPerUser per RateWindow.
func (u *userState) rateOK(now time.Time, j *job) bool {
	if j.MaxPerUser <= 0 {
		return true
	}
	cut := now.Add(-time.Duration(j.RateWindow)*time.Second - time.Second)
	k := 0
	for _, t := range u.attempts {
		if t.After(cut) {
			u.attempts[k] = t
			k++
		}
	}
	u.attempts = u.attempts[:k]
	return k < j.MaxPerUser
}

// validCode picks the lowest step that every module accepts now and later in this login: inside
// the window, above the last accepted step, and with a code that no nearby step shares (so all
// modules record this very step).
func (u *userState) validCode(p totp.Params, now time.Time, j *job) (uint64, string, bool) {
	period := time.Duration(j.Period) * time.Second
	cur := totp.Step(now, j.Period)
	w := uint64(j.Window)
	low := cur - w
	if period-time.Duration(now.UnixNano())%period < margin {
		low++
	}
	s := max(low, u.last+1)
	for ; s <= cur+w; s++ {
		code := totp.Code(u.Secret, p, s)
		if code != u.lastCode && unique(u.Secret, p, s, code, 2*j.Window+2) {
			return s, code, true
		}
	}
	return 0, "", false
}

// unique reports whether code differs from the codes of the steps within d of s.
func unique(secret []byte, p totp.Params, s uint64, code string, d int) bool {
	for k := -d; k <= d; k++ {
		if k == 0 || (k < 0 && uint64(-k) > s) {
			continue
		}
		if totp.Code(secret, p, uint64(int64(s)+int64(k))) == code {
			return false
		}
	}
	return true
}

// wrongCode returns six digits that match no step within 30 steps of now (GA looks that far for
// clock skew) and differ from the last accepted code.
func (u *userState) wrongCode(rng *rand.Rand, p totp.Params, now time.Time, j *job) string {
	cur := totp.Step(now, j.Period)
	for {
		c := fmt.Sprintf("%06d", rng.IntN(1000000))
		if c != u.lastCode && unique(u.Secret, p, cur, c, 30) && totp.Code(u.Secret, p, cur) != c {
			return c
		}
	}
}

// readLine reads one line from r (without the newline).
func readLine(r *bufio.Reader) (string, error) {
	l, err := r.ReadString('\n')
	if err != nil {
		if err == io.EOF && l != "" {
			return l, nil
		}
		return "", err
	}
	return l[:len(l)-1], nil
}
