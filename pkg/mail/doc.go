// Package mail sends plain-text notices through an SMTP relay with the standard library's
// net/smtp.
//
// A Sender queues messages in memory (bounded) and delivers them from one goroutine, so a slow or
// failing relay never blocks the caller: Send returns at once, a full queue drops the message,
// and every outcome is logged and counted (Stats). Each delivery is one connection with a
// deadline (Config.Timeout) covering the whole session; it is retried Config.Retries times,
// Config.RetryDelay apart. STARTTLS is used when the relay offers it (starttls = "auto"),
// required ("always") or never tried ("never"); AUTH PLAIN with Config.Username and the password
// from Config.PasswordFile only ever runs over TLS (or to localhost, as net/smtp insists).
//
// With no Config.Host, nothing is sent: each notice is only logged (recipient and subject).
//
// Messages carry From, To, Subject, Date and Message-ID headers and a UTF-8 plain-text body.
// Header values with CR or LF are refused, so a caller's text cannot inject headers. The package
// logs recipients and subjects, never bodies.
package mail
