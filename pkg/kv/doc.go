// Package kv is the registry's revisioned key-value store, shaped like etcd's so that an etcd
// implementation can sit beside the bbolt one: the store hands out revisions, and the registry's
// sync protocol uses them as its own (docs/sync-protocol.md).
//
// Every Update that changes something commits all its changes as one new revision (the previous
// plus one) and records them in a history, one Event per changed key with the value before the
// change (Prev), so a reader can tell a record leaving a node's scope from one that was never in
// it. View reads a consistent snapshot at one revision; Events reads the history after a revision;
// Compact (or BoltOptions.HistoryLimit) drops old history, after which Events from before it
// returns ErrCompacted and a sync client must take a snapshot. Changed wakes watchers.
//
// Values are opaque bytes: secrets are sealed (package seal) before they are Put.
//
// # Bolt
//
// Bolt keeps the store in one bbolt file that the registry's single process opens once and keeps
// open. It is not the node store (package store), whose files are opened per transaction.
//
// Layout, all integers 8-byte big-endian:
//
//	bucket "kv"       key -> modrev | value
//	bucket "history"  rev | seq (4 bytes, the event's place in its revision, in key order)
//	                  -> version(1) type(1) uvarint(len key) key [Put: uvarint(len value) value]
//	                     prev(1: 0 or 1) [uvarint(prev modrev) uvarint(len prev value) prev value]
//	bucket "meta"     "format" -> 1, "rev" -> current revision, "compacted" -> compacted revision
//
// History keys grow with each revision, so bbolt appends to the last page; Events seeks to the
// first key after its revision and reads forward without loading the rest. Compact deletes
// history in chunks of bounded size, one transaction each. The current revision is stored in the
// same transaction as the data and the history, so a crash loses or keeps a revision whole.
//
// The file is 0600 and its directory 0700, both owned by the effective user (root); symlinks and
// looser modes are refused through the open descriptor (package securefile). Opening waits at
// most BoltOptions.Timeout for bbolt's file lock, so a second registry on the same file fails
// instead of hanging. Writers are serialised (a context can give up waiting); readers never wait
// for writers. The file is mapped with 1 GiB of address space up front so that a long View does
// not block a writer that grows the file; a View still keeps the pages it sees from reuse until
// it ends, so copy out what a slow consumer needs rather than streaming to it from inside View.
package kv
