package kv

import (
	"fmt"
	"testing"
)

// value300 is a record of about the size of a token's JSON.
var value300 = make([]byte, 300)

func BenchmarkUpdate1Key(b *testing.B) {
	for _, bc := range []struct {
		name string
		keys int
	}{{"empty store", 0}, {"100k keys", 100_000}} {
		b.Run(bc.name, func(b *testing.B) {
			s := openTemp(b, BoltOptions{HistoryLimit: 10_000})
			fill(b, s, bc.keys, 10_000)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				_, err := s.Update(ctx, func(tx Txn) error { return tx.Put(fmt.Sprintf("t/user%06d/1", i%1000), value300) })
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fill puts n keys of 300 bytes, chunk keys per revision.
func fill(b *testing.B, s Store, n, chunk int) {
	b.Helper()
	for i := 0; i < n; i += chunk {
		_, err := s.Update(ctx, func(tx Txn) error {
			for j := i; j < min(i+chunk, n); j++ {
				if err := tx.Put(fmt.Sprintf("t/user%06d/1", j), value300); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkViewRange100k(b *testing.B) {
	s := openTemp(b, BoltOptions{})
	fill(b, s, 100_000, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		n, size := 0, 0
		err := s.View(ctx, func(_ int64, tx Txn) error {
			return tx.Range("t/", func(kv KeyValue) error { n++; size += len(kv.Value); return nil })
		})
		if err != nil || n != 100_000 {
			b.Fatalf("View = %d keys, %v", n, err)
		}
	}
}

func BenchmarkEvents1000Revs(b *testing.B) {
	s := openTemp(b, BoltOptions{})
	fill(b, s, 1000, 1)
	for _, bc := range []struct {
		name   string
		prefix string
		want   int
	}{
		{"all", "", 1000},
		{"prefix matching 10", "t/user00000", 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				evs, err := s.Events(ctx, bc.prefix, 0, 0)
				if err != nil || len(evs) != bc.want {
					b.Fatalf("Events = %d, %v, want %d", len(evs), err, bc.want)
				}
			}
		})
	}
}
