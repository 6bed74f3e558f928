// Command etcd is the etcd server at the version pinned in this directory's go.mod, built by
// `make etcd` into build/tools/etcd for the tests that start a real etcd cluster
// (pkg/kv/etcdtest). It is a test tool: pam-totp never embeds etcd, and a site runs its own etcd.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
