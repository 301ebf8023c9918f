package fhir

import (
	"time"
)

// Dates are indexed as ranges [Lo, Hi] of Unix seconds, inclusive: "1980"
// covers the whole year, "1980-03-01T10:00:00Z" a single second.

// parsed is a date or dateTime split into its parts; prec is how many of
// year, month, day, minute, second are present (1..5).
type parsed struct {
	y, mo, d, h, mi, sec int
	prec                 int
	zone                 bool // a zone designator was present
	off                  int  // zone offset in seconds
}

func digits(s string, n int) (int, bool) {
	if len(s) < n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseDate reads YYYY[-MM[-DD[Thh:mm[:ss[.fff]][zone]]]] without regexps
// (it runs for every date of every resource indexed).
func parseDate(s string) (p parsed, ok bool) {
	if p.y, ok = digits(s, 4); !ok {
		return p, false
	}
	p.prec, s = 1, s[4:]
	if s == "" {
		return p, true
	}
	if s[0] != '-' {
		return p, false
	}
	if p.mo, ok = digits(s[1:], 2); !ok {
		return p, false
	}
	p.prec, s = 2, s[3:]
	if s == "" {
		return p, true
	}
	if s[0] != '-' {
		return p, false
	}
	if p.d, ok = digits(s[1:], 2); !ok {
		return p, false
	}
	p.prec, s = 3, s[3:]
	if s == "" {
		return p, true
	}
	if s[0] != 'T' {
		return p, false
	}
	if p.h, ok = digits(s[1:], 2); !ok || len(s) < 6 || s[3] != ':' {
		return p, false
	}
	if p.mi, ok = digits(s[4:], 2); !ok {
		return p, false
	}
	p.prec, s = 4, s[6:]
	if len(s) > 0 && s[0] == ':' {
		if p.sec, ok = digits(s[1:], 2); !ok {
			return p, false
		}
		p.prec, s = 5, s[3:]
		if len(s) > 0 && s[0] == '.' {
			n := 0
			for n < len(s)-1 && s[1+n] >= '0' && s[1+n] <= '9' {
				n++
			}
			if n < 1 || n > 9 {
				return p, false
			}
			s = s[1+n:]
		}
	}
	switch {
	case s == "":
		return p, true
	case s == "Z":
		p.zone = true
		return p, true
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		zh, ok1 := digits(s[1:], 2)
		zm, ok2 := digits(s[4:], 2)
		if !ok1 || !ok2 || zh > 14 || zm > 59 || zh == 14 && zm > 0 {
			return p, false
		}
		p.zone, p.off = true, zh*3600+zm*60
		if s[0] == '-' {
			p.off = -p.off
		}
		return p, true
	}
	return p, false
}

// DateRange parses a FHIR date, dateTime or instant into its covered range.
// allowTime=false accepts dates only (FHIR "date"); search values accept
// hh:mm without seconds and no zone (taken as UTC).
func DateRange(s string, allowTime bool) (lo, hi int64, ok bool) {
	p, ok := parseDate(s)
	if !ok || p.y < 1 || p.prec > 3 && !allowTime {
		return 0, 0, false
	}
	if p.prec >= 2 && (p.mo < 1 || p.mo > 12) {
		return 0, 0, false
	}
	switch p.prec {
	case 1:
		start := time.Date(p.y, 1, 1, 0, 0, 0, 0, time.UTC)
		return start.Unix(), start.AddDate(1, 0, 0).Unix() - 1, true
	case 2:
		start := time.Date(p.y, time.Month(p.mo), 1, 0, 0, 0, 0, time.UTC)
		return start.Unix(), start.AddDate(0, 1, 0).Unix() - 1, true
	case 3:
		t := time.Date(p.y, time.Month(p.mo), p.d, 0, 0, 0, 0, time.UTC)
		if p.d < 1 || t.Day() != p.d {
			return 0, 0, false
		}
		return t.Unix(), t.Unix() + 86399, true
	}
	if p.d < 1 || p.h > 23 || p.mi > 59 || p.sec > 59 {
		return 0, 0, false
	}
	loc := time.UTC
	if p.off != 0 {
		loc = time.FixedZone("", p.off)
	}
	t := time.Date(p.y, time.Month(p.mo), p.d, p.h, p.mi, p.sec, 0, loc)
	if t.Day() != p.d {
		return 0, 0, false
	}
	if p.prec == 4 { // minute precision
		return t.Unix(), t.Unix() + 59, true
	}
	return t.Unix(), t.Unix(), true
}

// ValidDate reports whether s is a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
func ValidDate(s string) bool { _, _, ok := DateRange(s, false); return ok }

// ValidDateTime reports whether s is a FHIR dateTime: a date, or a full
// date and time with seconds and a time zone.
func ValidDateTime(s string) bool {
	if ValidDate(s) {
		return true
	}
	p, ok := parseDate(s)
	if !ok || p.prec != 5 || !p.zone {
		return false
	}
	_, _, ok = DateRange(s, true)
	return ok
}

// ValidInstant reports whether s is a FHIR instant.
func ValidInstant(s string) bool {
	p, ok := parseDate(s)
	return ok && p.prec == 5 && p.zone && ValidDateTime(s)
}
