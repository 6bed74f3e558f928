module github.com/pam-totp/pam-totp

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	github.com/boombuler/barcode v1.0.1-0.20190219062509-6c824513bacc // indirect
	github.com/mdp/qrterminal/v3 v3.2.1 // indirect
	github.com/msteinert/pam/v2 v2.1.0 // indirect
	github.com/pquerna/otp v1.5.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/term v0.13.0 // indirect
	rsc.io/qr v0.2.0 // indirect
)
