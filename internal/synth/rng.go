package synth

// Deterministic, allocation-free helpers: a splitmix64 random stream, UUID
// derivation, check digits and fast civil-date formatting.

const (
	golden = 0x9E3779B97F4A7C15
)

// mix64 is the splitmix64 finaliser. It is a bijection on uint64.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// rng is a splitmix64 stream. The zero value is usable but every stream in
// this package is seeded from the group key.
type rng struct{ s uint64 }

func newRNG(seed uint64) rng { return rng{s: mix64(seed)} }

func (r *rng) next() uint64 {
	r.s += golden
	return mix64(r.s)
}

// intn returns a uniform int in [0,n); n must be > 0 and < 2^32.
func (r *rng) intn(n int) int {
	return int(((r.next() >> 32) * uint64(n)) >> 32)
}

// rangeInt returns a uniform int in [lo,hi].
func (r *rng) rangeInt(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// float returns a uniform float64 in [0,1).
func (r *rng) float() float64 {
	return float64(r.next()>>11) * (1.0 / (1 << 53))
}

// chance reports true with probability p.
func (r *rng) chance(p float64) bool { return r.float() < p }

// pickCum picks an index from a cumulative weight table (last entry = total).
func (r *rng) pickCum(cum []uint32) int {
	x := uint32(r.intn(int(cum[len(cum)-1])))
	lo, hi := 0, len(cum)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cum[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// pickSmall picks an index from small weights (percentages or similar).
func (r *rng) pickSmall(w ...int) int {
	t := 0
	for _, v := range w {
		t += v
	}
	x := r.intn(t)
	for i, v := range w {
		if x < v {
			return i
		}
		x -= v
	}
	return len(w) - 1
}

func cumulative(w []float64, scale float64) []uint32 {
	out := make([]uint32, len(w))
	var acc uint32
	for i, v := range w {
		n := uint32(v*scale + 0.5)
		if n == 0 {
			n = 1
		}
		acc += n
		out[i] = acc
	}
	return out
}

const hexdigits = "0123456789abcdef"

// uuidFrom formats 128 pseudo-random bits derived from (key, a, b) as a
// version-4 UUID. For a < 2^44 and b < 2^20 the first 64 bits are a
// bijection of (a, b), so ids are unique within a seed.
func uuidFrom(key, key2, a, b uint64) string {
	h1 := mix64(key ^ (a<<20 | b))
	h2 := mix64(h1 ^ key2)
	h1 = h1&^(0xF<<12) | 0x4<<12
	h2 = h2&^(0x3<<62) | 0x2<<62
	var buf [36]byte
	j := 0
	for i := 0; i < 8; i++ {
		if i == 4 || i == 6 {
			buf[j] = '-'
			j++
		}
		b := byte(h1 >> (56 - 8*i))
		buf[j] = hexdigits[b>>4]
		buf[j+1] = hexdigits[b&15]
		j += 2
	}
	for i := 0; i < 8; i++ {
		if i == 0 || i == 2 {
			buf[j] = '-'
			j++
		}
		b := byte(h2 >> (56 - 8*i))
		buf[j] = hexdigits[b>>4]
		buf[j+1] = hexdigits[b&15]
		j += 2
	}
	return string(buf[:])
}

// luhnDigit returns the Luhn check digit for the decimal digits in s.
func luhnDigit(s []byte) byte {
	sum := 0
	double := true // rightmost payload digit is doubled
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return byte('0' + (10-sum%10)%10)
}

// luhnValid reports whether s (digits only) passes the Luhn check.
func luhnValid(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return luhnDigit([]byte(s[:len(s)-1])) == s[len(s)-1]
}

// appendUint appends v zero-padded to width digits.
func appendUint(b []byte, v uint64, width int) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		width--
		if (v == 0 && width <= 0) || i == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// ---- civil dates ---------------------------------------------------------

const daySec = 86400

// daysFromCivil returns days since 1970-01-01 for a proleptic Gregorian date.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	yy := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		yy++
	}
	return int(yy), m, d
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// lastSunday returns the day number of the last Sunday of month m in year y.
func lastSunday(y, m int) int64 {
	var last int64
	if m == 12 {
		last = daysFromCivil(y+1, 1, 1) - 1
	} else {
		last = daysFromCivil(y, m+1, 1) - 1
	}
	wd := (last%7 + 7 + 4) % 7 // 1970-01-01 was a Thursday (4); Sunday = 0
	return last - wd
}

// parisOffset returns the Europe/Paris UTC offset in seconds at unix time t
// (EU summer-time rule: last Sunday of March 01:00 UTC to last Sunday of
// October 01:00 UTC).
func parisOffset(t int64) int64 {
	y, _, _ := civilFromDays(floorDiv(t, daySec))
	start := lastSunday(y, 3)*daySec + 3600
	end := lastSunday(y, 10)*daySec + 3600
	if t >= start && t < end {
		return 7200
	}
	return 3600
}

func append2(b []byte, v int) []byte {
	return append(b, byte('0'+v/10), byte('0'+v%10))
}

func appendDate(b []byte, days int64) []byte {
	y, m, d := civilFromDays(days)
	b = append(b, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = append2(b, m)
	b = append(b, '-')
	return append2(b, d)
}

// fmtDate formats a day number as YYYY-MM-DD.
func fmtDate(days int64) string {
	var buf [10]byte
	return string(appendDate(buf[:0], days))
}

// fmtDateTime formats unix time t as a Europe/Paris local FHIR dateTime with
// explicit offset, e.g. 2025-03-12T09:30:00+01:00.
func fmtDateTime(t int64) string {
	off := parisOffset(t)
	lt := t + off
	days := floorDiv(lt, daySec)
	s := int(lt - days*daySec)
	var buf [25]byte
	b := appendDate(buf[:0], days)
	b = append(b, 'T')
	b = append2(b, s/3600)
	b = append(b, ':')
	b = append2(b, s/60%60)
	b = append(b, ':')
	b = append2(b, s%60)
	b = append(b, '+', '0', byte('0'+off/3600), ':', '0', '0')
	return string(b)
}

// localMidnight returns the unix time of local (Paris) midnight of the local
// day containing unix time t.
func localMidnight(t int64) int64 {
	off := parisOffset(t)
	days := floorDiv(t+off, daySec)
	return days*daySec - off
}

// asciiFold lower-cases s, folds French accented letters to ASCII, and keeps
// only [a-z0-9] plus the characters in keep.
func asciiFold(s string, keep string) string {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			out = append(out, byte(r))
		case r >= 'A' && r <= 'Z':
			out = append(out, byte(r-'A'+'a'))
		default:
			switch r {
			case 'à', 'á', 'â', 'ä', 'ã', 'å', 'À', 'Â', 'Ä':
				out = append(out, 'a')
			case 'ç', 'Ç':
				out = append(out, 'c')
			case 'é', 'è', 'ê', 'ë', 'É', 'È', 'Ê', 'Ë':
				out = append(out, 'e')
			case 'î', 'ï', 'í', 'ì', 'Î', 'Ï':
				out = append(out, 'i')
			case 'ô', 'ö', 'ó', 'ò', 'õ', 'Ô', 'Ö':
				out = append(out, 'o')
			case 'ù', 'û', 'ü', 'ú', 'Ù', 'Û', 'Ü':
				out = append(out, 'u')
			case 'ÿ', 'Ÿ':
				out = append(out, 'y')
			case 'ñ':
				out = append(out, 'n')
			case 'œ', 'Œ':
				out = append(out, 'o', 'e')
			case 'æ', 'Æ':
				out = append(out, 'a', 'e')
			default:
				for _, k := range keep {
					if r == k {
						out = append(out, byte(r))
						break
					}
				}
			}
		}
	}
	return string(out)
}
