package paths

import "testing"

// Without -X the paths are those of `make install` with PREFIX=/usr: what tests and the testclock
// builds expect.
func TestDefaults(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		got  func() string
		want string
	}{
		{"NodeConfig", NodeConfig, "/etc/pam-totp/pam_totp.conf"},
		{"RegistryConfig", RegistryConfig, "/etc/pam-totp/registry.conf"},
		{"StateDir", StateDir, "/var/lib/pam-totp"},
		{"RegistryStateDir", RegistryStateDir, "/var/lib/pam-totp-registry"},
		{"VerifySocket", VerifySocket, "/run/pam-totp/verify.sock"},
		{"Helper", Helper, "/usr/libexec/pam-totp/pam-totp-helper"},
	} {
		if got := tt.got(); got != tt.want {
			t.Errorf("%s() = %q, want %q", tt.name, got, tt.want)
		}
	}
}
