package web

import (
	"strings"
	"testing"
	"time"

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

func TestRecentTrendPoints(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).AddDate(0, 0, d) }
	var pts []point
	pts = append(pts, point{day(-900), 80}) // years before the stay
	for d := range 5 {
		pts = append(pts, point{day(d), float64(70 + d)})
	}
	got := recent(pts)
	if len(got) != 5 || !got[0].t.Equal(day(0)) {
		t.Fatalf("recent kept %d points from %v, want the stay's 5", len(got), got[0].t)
	}
	// Two points years apart: both kept (a trend needs two).
	if got := recent([]point{{day(-900), 80}, {day(0), 70}}); len(got) != 2 {
		t.Fatalf("sparse series: %d points", len(got))
	}
	// A long stay: the last 40.
	var many []point
	for i := range 100 {
		many = append(many, point{day(0).Add(time.Duration(i) * time.Hour), 70})
	}
	if got := recent(many); len(got) != 40 || !got[39].t.Equal(many[99].t) {
		t.Fatalf("long series: %d points", len(got))
	}
}
