package web

import (
	"strings"
	"testing"

	"carnet/internal/auth"
)

func TestQRDataURL(t *testing.T) {
	secret, _ := auth.NewTOTPSecret()
	u, err := qrDataURL(auth.TOTPURI("Carnet", "new.nurse", secret))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, "data:image/png;base64,") || len(u) < 500 {
		t.Fatalf("QR data URL %.60q…", u)
	}
}
