// Package kv is the registry's revisioned key-value store, shaped like etcd's, with two
// implementations: Bolt (one bbolt file, the default) and Etcd (an etcd cluster, for several
// registry replicas). The store hands out revisions, and the registry's sync protocol uses them as
// its own (docs/sync-protocol.md).
//
// Every Update that changes something commits all its changes as one new revision (greater than
// the previous: on Bolt the previous plus one, on etcd etcd's next revision, so a prefix's
// revisions have gaps where other keys of the cluster changed) and records them in a history, one Event per changed key with the value before the
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
//	bucket "kv"       key -> ref: the history key (12 bytes) of the key's current entry
//	bucket "history"  rev | seq (4 bytes, the entry's place in its revision, in key order)
//	                  -> version(2) type(1) uvarint(len key) key [Put: uvarint(len value) value]
//	                     prev(1: 0 or 1) [ref of the key's previous entry, a Put]
//	bucket "meta"     "format" -> 2, "rev" -> current revision, "compacted" -> compacted revision
//
// Each value is stored once, as etcd's MVCC stores it: in the history entry of the revision that
// wrote it. Get, Range and View read a key's value through its reference (ModRev is the
// reference's revision); Events reads an event's previous value through the entry's reference
// to the key's previous entry. Inside an Update a written key's kv value is the value itself,
// tagged pending (first byte 0xff, which no reference starts with); at commit each written key
// gets its history entry and its kv value becomes the reference to it, in the same transaction.
//
// History keys grow with each revision, so bbolt appends to the last page (filled to 95%); Events
// seeks to the first key after its revision and reads forward without loading the rest. Bucket kv
// fills its pages to 90%, as keys often come in key order (an import).
//
// Compaction to revision C (Compact, or the HistoryLimit trim in each Update) keeps what is still
// read: an entry at or below C goes once a later entry of the same key at or below C supersedes
// it, and tombstones (Delete entries) at or below C go. So the current value of every key, and every
// value that an event after C names as its previous one, survive, and Events after C reads
// exactly what it read before the compaction. Each entry in the compacted revisions deletes the
// entry its reference names (and itself, if a Delete); Compact does this in chunks of whole
// revisions (at least 10000 entries each, or what is left), one transaction each. The current
// revision is stored in the same transaction as the data and the history, so a crash loses or
// keeps a revision whole.
//
// Format 1 kept each value in bucket "kv" as well as in the history entry that wrote it and, as
// the previous value, in the next one: two to three copies. OpenBolt converts a format 1 file in
// the transaction that opens it (it holds the history in memory meanwhile), giving values whose
// entries were compacted away an entry at the revision that wrote them; a file whose history
// contradicts its values is refused, unchanged, with the reason.
//
// The file is 0600 and its directory 0700, both owned by the effective user (root); symlinks and
// looser modes are refused through the open descriptor (package securefile). Opening waits at
// most BoltOptions.Timeout for bbolt's file lock, so a second registry on the same file fails
// instead of hanging. Writers are serialised (a context can give up waiting); readers never wait
// for writers. The file is mapped with 1 GiB of address space up front so that a long View does
// not block a writer that grows the file; a View still keeps the pages it sees from reuse until
// it ends, so copy out what a slow consumer needs rather than streaming to it from inside View.
//
// # Etcd
//
// Etcd keeps the store in an etcd cluster (3.6 or later; the tests run 3.7.3, see
// tools/etcd/go.mod) under EtcdOptions.Prefix: key k is etcd key Prefix+"d/"+k, and Prefix+"g" is
// the guard key described below. The store's revisions are etcd's, and its history is etcd's:
// there is no second copy of any value. Several Etcd values on one prefix, in one process or in
// several registry replicas, are one store.
//
// Update reads at etcd's current revision R (Get with WithRev(R)), buffers fn's writes, and
// commits them as one etcd transaction, so one Update is one etcd revision. The transaction
// compares everything fn's outcome depended on, and commits only if none of it changed since R:
//
//   - each key fn read with Get or Delete: its ModRevision is the one seen at R (0: absent), so a
//     change, a deletion or a creation of it fails the commit;
//   - each prefix fn ranged over: every key in it has ModRevision <= R (one compare over the
//     range), so a key changed or added in it since fails the commit;
//   - a key deleted from a ranged prefix leaves nothing for a range compare to see, so every
//     Update that deletes also writes the guard key, and an Update that ranged compares the
//     guard's ModRevision with the one at R.
//
// This makes Updates serialisable, phantoms included, with compares whose number does not grow
// with the size of the ranges read (a compare per key seen would hit etcd's --max-txn-ops on a
// registry of any size). The cost: any Update that deletes conflicts with every concurrent Update
// that ranged, prefix or not; deletes are rare in the registry (a token or node removed). A
// locking scheme (an etcd lease and lock key per Update) would serialise all writers and add two
// round trips; optimistic compares cost nothing when writers do not collide. An Update whose
// compares fail runs fn again on a newer revision, after a short random pause, at most
// EtcdOptions.MaxAttempts times, then returns ErrConflict; fn must therefore not act outside tx.
// Keys an Update writes have ModRev 0 inside it: their revision is known only at commit.
// The Updates of one Etcd value run one at a time, as with bbolt (in the registry every change
// writes the audit head, so writers of one process racing through the compares would only
// overtake each other); only the writers of other processes race. An Update waits for those
// before it while etcd answers them, and returns ErrUnavailable when it answered none of them
// for RequestTimeout.
//
// etcd limits a transaction to --max-txn-ops compares and operations each (default 128) and a
// request to --max-request-bytes (default 1.5 MiB); an Update beyond them fails with a message
// that names the flag. Sites that rewrite many records in one Update (re-sealing) raise them.
//
// View reads at one pinned revision; Range reads a page of 1000 keys at a time from etcd, so a
// View over every record does not hold them all. Events answers from the events a watch on the prefix has
// kept since the store opened (the last 10000 events or 32 MiB, whole revisions, with previous
// values), once an etcd progress notification says the watch has passed the revision read at
// the start of the call: about a millisecond. Older history it reads from etcd through a watch
// from since, which etcd catches up in steps of 100 ms, so that costs up to 100 ms.
// Compact is etcd's compaction, which drops the history of the whole cluster, every prefix; with
// several registries on one etcd, let one of them or etcd's --auto-compaction-retention do it.
// CompactedRev is the highest compaction this store made or met, so a compaction by someone
// else shows first as ErrCompacted from Events (when it reads etcd's history: what the store's
// watch kept stays readable). Changed follows a watch on the prefix, so it
// fires for the writes of other replicas too.
//
// Every round trip has EtcdOptions.RequestTimeout and asks for a member with a leader: an etcd
// that is unreachable or has lost quorum gives ErrUnavailable within it, never a hang. An Update
// whose commit fails so may have been applied (whole: an etcd transaction is atomic); the error
// says so.
package kv
