package fhir

import (
	"regexp"
	"strconv"
	"time"
)

// Dates are indexed as ranges [Lo, Hi] of Unix seconds, inclusive: "1980"
// covers the whole year, "1980-03-01T10:00:00Z" a single second.

var (
	reDate     = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$`)
	reDateTime = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?$`)
)

// DateRange parses a FHIR date, dateTime or instant into its covered range.
// allowTime=false accepts dates only (FHIR "date"); search values accept
// hh:mm without seconds and no zone (taken as UTC).
func DateRange(s string, allowTime bool) (lo, hi int64, ok bool) {
	if m := reDate.FindStringSubmatch(s); m != nil {
		y, _ := strconv.Atoi(m[1])
		if y < 1 {
			return 0, 0, false
		}
		switch {
		case m[2] == "":
			start := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
			return start.Unix(), start.AddDate(1, 0, 0).Unix() - 1, true
		case m[3] == "":
			mo, _ := strconv.Atoi(m[2])
			if mo < 1 || mo > 12 {
				return 0, 0, false
			}
			start := time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC)
			return start.Unix(), start.AddDate(0, 1, 0).Unix() - 1, true
		default:
			mo, _ := strconv.Atoi(m[2])
			d, _ := strconv.Atoi(m[3])
			t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
			if mo < 1 || mo > 12 || t.Day() != d || d < 1 {
				return 0, 0, false
			}
			return t.Unix(), t.Unix() + 86399, true
		}
	}
	if !allowTime {
		return 0, 0, false
	}
	m := reDateTime.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	y, mo, d, h, mi := n(1), n(2), n(3), n(4), n(5)
	sec := 0
	if m[6] != "" {
		sec = n(6)
	}
	if mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 {
		return 0, 0, false
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		zh, _ := strconv.Atoi(z[1:3])
		zm, _ := strconv.Atoi(z[4:6])
		if zh > 14 || zm > 59 || zh == 14 && zm > 0 {
			return 0, 0, false
		}
		off := zh*3600 + zm*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, 0, loc)
	if t.Day() != d {
		return 0, 0, false
	}
	if m[6] == "" { // minute precision
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
	m := reDateTime.FindStringSubmatch(s)
	if m == nil || m[6] == "" || m[8] == "" {
		return false
	}
	_, _, ok := DateRange(s, true)
	return ok
}

// ValidInstant reports whether s is a FHIR instant.
func ValidInstant(s string) bool {
	m := reDateTime.FindStringSubmatch(s)
	return m != nil && m[6] != "" && m[8] != "" && ValidDateTime(s)
}
