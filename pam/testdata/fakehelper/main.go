// Command fakehelper stands in for pam-totp-helper in the tests of pam_totp.so.
//
// It speaks the verifier protocol (docs/protocol.md) on fd 3. The module fixes
// argv, so the behaviour comes from the request: every module argument reaches
// the helper as an arg= entry, and fake=MODE picks what to do (see run). With
// out=DIR it writes what it saw, at start and after every answer, to
// DIR/report.json; the tests read it back.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// Report is what the helper saw; the tests decode the same shape.
type Report struct {
	Pid       int
	Args      []string
	Env       []string
	FDs       []string // "fd target" of each descriptor open when main started
	StdioNull bool     // fds 0-2 are /dev/null
	FD3Socket bool     // fd 3 is a socket
	Status    []string // Uid, Gid, Groups, SigBlk, SigIgn lines of /proc/self/status
	Cwd       string
	Limits    map[string][2]uint64 // core, nofile, fsize, as: soft and hard
	Request   [][2]string
	Answers   [][]byte
	NoAnswers int
}

const maxPayload = 16384

var (
	rep     Report
	outPath string
	sock    *os.File
)

func main() {
	rep.FDs = openFDs() // first, before the runtime or we open anything
	rep.Pid = os.Getpid()
	rep.Args = os.Args
	rep.Env = os.Environ()
	rep.StdioNull = stdioIsNull()
	var st syscall.Stat_t
	rep.FD3Socket = syscall.Fstat(3, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFSOCK
	rep.Status = procStatus()
	rep.Cwd, _ = os.Getwd()
	rep.Limits = limits()
	if len(os.Args) != 2 || os.Args[1] != "--pam" {
		os.Exit(2)
	}
	sock = os.NewFile(3, "socket")
	typ, payload := read()
	if typ != 'Q' {
		os.Exit(3)
	}
	for _, e := range bytes.SplitAfter(payload, []byte{0}) {
		if len(e) == 0 {
			continue
		}
		k, v, _ := strings.Cut(strings.TrimSuffix(string(e), "\x00"), "=")
		rep.Request = append(rep.Request, [2]string{k, v})
	}
	mode := arg("fake")
	if d := arg("out"); d != "" {
		outPath = filepath.Join(d, "report.json")
	}
	save()
	run(mode)
}

// run does what mode says; the default sends D with verdict=NAME (or success).
func run(mode string) {
	verdict := "success"
	if v, ok := lookup("verdict"); ok {
		verdict = v
	}
	switch mode {
	case "prompt", "echo":
		typ := byte('P')
		if mode == "echo" {
			typ = 'E'
		}
		send(typ, []byte("Verification code: "))
		ans, ok := answer()
		if !ok || string(ans) != "123456" {
			verdict = "auth_err"
		}
		send('D', []byte(verdict))
	case "prompts": // two prompts in a row, then the verdict
		send('P', []byte("First: "))
		answer()
		send('P', []byte("Second: "))
		answer()
		send('D', []byte(verdict))
	case "messages":
		send('I', []byte("info from helper"))
		send('R', []byte("error from helper"))
		send('D', []byte(verdict))
	case "authtok":
		send('T', []byte("hunter2"))
		send('D', []byte(verdict))
	case "exit1":
		os.Exit(1)
	case "segv":
		die()
	case "exit1-after-done":
		send('D', []byte("success"))
		os.Exit(1)
	case "segv-after-done":
		send('D', []byte("success"))
		time.Sleep(50 * time.Millisecond)
		die()
	case "hang":
		time.Sleep(time.Hour)
	case "hang-after-done":
		send('D', []byte("success"))
		time.Sleep(time.Hour)
	case "close-after-done": // closes the stream but does not exit
		send('D', []byte("success"))
		sock.Close()
		time.Sleep(time.Hour)
	case "frames": // count=N frames in all, the last one D
		n, _ := strconv.Atoi(arg("count"))
		for i := 1; i < n; i++ {
			send('I', []byte("frame "+strconv.Itoa(i)))
		}
		send('D', []byte(verdict))
	case "max-payload":
		send('I', bytes.Repeat([]byte("x"), maxPayload))
		send('D', []byte(verdict))
	case "oversized":
		send('I', bytes.Repeat([]byte("x"), maxPayload+1))
		send('D', []byte(verdict))
	case "unknown-frame":
		send('X', []byte("?"))
		send('D', []byte(verdict))
	case "truncated-header":
		sock.Write([]byte{'D', 0, 0})
	case "truncated-payload":
		sock.Write([]byte{'D', 0, 0, 0, 7, 's', 'u', 'c'})
	case "nul-text":
		send('I', []byte("a\x00b"))
		send('D', []byte(verdict))
	case "data-after-done":
		send('D', []byte("success"))
		send('I', []byte("more"))
	case "no-read": // ends without a verdict
	default:
		send('D', []byte(verdict))
	}
}

func arg(key string) string {
	v, _ := lookup(key)
	return v
}

// lookup finds a module argument key=value among the request's arg entries.
func lookup(key string) (string, bool) {
	for _, kv := range rep.Request {
		if kv[0] == "arg" {
			if k, v, ok := strings.Cut(kv[1], "="); ok && k == key {
				return v, true
			}
		}
	}
	return "", false
}

func read() (byte, []byte) {
	var hdr [5]byte
	if _, err := readFull(hdr[:]); err != nil {
		os.Exit(4)
	}
	p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := readFull(p); err != nil {
		os.Exit(4)
	}
	return hdr[0], p
}

func readFull(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := sock.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// answer reads the reply to a prompt and records it.
func answer() ([]byte, bool) {
	typ, p := read()
	switch typ {
	case 'A':
		rep.Answers = append(rep.Answers, p)
	case 'N':
		rep.NoAnswers++
	default:
		os.Exit(5)
	}
	save()
	return p, typ == 'A'
}

func send(typ byte, p []byte) {
	buf := make([]byte, 5, 5+len(p))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:], uint32(len(p)))
	if _, err := sock.Write(append(buf, p...)); err != nil {
		os.Exit(6)
	}
}

func save() {
	if outPath == "" {
		return
	}
	b, err := json.Marshal(&rep)
	if err != nil {
		os.Exit(7)
	}
	tmp := outPath + ".tmp"
	if os.WriteFile(tmp, b, 0o600) != nil || os.Rename(tmp, outPath) != nil {
		os.Exit(7)
	}
}

// die ends the process by SIGSEGV; the Go runtime ignores a SIGSEGV sent by
// kill, so put the default action back first.
func die() {
	var sa struct {
		handler, flags, restorer uintptr
		mask                     uint64
	}
	syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
	syscall.Kill(os.Getpid(), syscall.SIGSEGV)
	time.Sleep(time.Hour)
}

func openFDs() []string {
	var fds []string
	for fd := 0; fd < 1024; fd++ {
		if _, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); e == 0 {
			target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			fds = append(fds, strconv.Itoa(fd)+" "+target)
		}
	}
	return fds
}

func stdioIsNull() bool {
	var null syscall.Stat_t
	if syscall.Stat("/dev/null", &null) != nil {
		return false
	}
	for fd := 0; fd < 3; fd++ {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != null.Rdev {
			return false
		}
	}
	return true
}

func procStatus() []string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		for _, k := range []string{"Uid:", "Gid:", "Groups:", "SigBlk:", "SigIgn:"} {
			if strings.HasPrefix(s.Text(), k) {
				lines = append(lines, strings.Join(strings.Fields(s.Text()), " "))
			}
		}
	}
	return lines
}

// limits reads the rlimits the module gave us. (The Go runtime raises the soft open-files limit
// to the hard one at start, so nofile shows what the module made possible.)
func limits() map[string][2]uint64 {
	out := map[string][2]uint64{}
	for name, r := range map[string]int{"core": syscall.RLIMIT_CORE, "nofile": syscall.RLIMIT_NOFILE,
		"fsize": syscall.RLIMIT_FSIZE, "as": syscall.RLIMIT_AS} {
		var rl syscall.Rlimit
		if syscall.Getrlimit(r, &rl) == nil {
			out[name] = [2]uint64{rl.Cur, rl.Max}
		}
	}
	return out
}
