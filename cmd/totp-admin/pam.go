package main

import (
	"errors"
	"fmt"

	"github.com/msteinert/pam/v2"
	"github.com/pam-totp/pam-totp/pkg/doctor"
)

// transact runs pam_authenticate through libpam: the one place totp-admin touches PAM.
func transact(req doctor.TxRequest, conv func(doctor.Style, string) (string, error)) error {
	handler := pam.ConversationFunc(func(s pam.Style, msg string) (string, error) {
		var st doctor.Style
		switch s {
		case pam.PromptEchoOff:
			st = doctor.PromptEchoOff
		case pam.PromptEchoOn:
			st = doctor.PromptEchoOn
		case pam.ErrorMsg:
			st = doctor.ErrorMsg
		case pam.TextInfo:
			st = doctor.TextInfo
		default:
			return "", errors.New("unsupported conversation message")
		}
		return conv(st, msg)
	})
	var (
		tx  *pam.Transaction
		err error
	)
	if req.ConfDir != "" {
		tx, err = pam.StartConfDir(req.Service, req.User, handler, req.ConfDir)
	} else {
		tx, err = pam.Start(req.Service, req.User, handler)
	}
	if err != nil {
		return fmt.Errorf("pam_start: %w", err)
	}
	defer tx.End()
	if req.RHost != "" {
		if err := tx.SetItem(pam.Rhost, req.RHost); err != nil {
			return fmt.Errorf("set PAM_RHOST: %w", err)
		}
	}
	return tx.Authenticate(0)
}
