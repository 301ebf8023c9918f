package synth

import "testing"

// BenchmarkPatient measures generating one patient with all its resources
// (the emitted maps are discarded).
func BenchmarkPatient(b *testing.B) {
	const patients = 758912
	g := New(Config{Seed: 42, Patients: patients})
	resources := 0
	emit := func(map[string]any) error { resources++; return nil }
	b.ReportAllocs()
	i, n := 0, 0
	for b.Loop() {
		if err := g.Patient(i, emit); err != nil {
			b.Fatal(err)
		}
		n++
		if i++; i == patients {
			i = 0
		}
	}
	b.ReportMetric(float64(resources)/float64(n), "resources/patient")
}

// BenchmarkStatic measures emitting the group, facilities and staff.
func BenchmarkStatic(b *testing.B) {
	g := New(Config{Seed: 42})
	emit := func(map[string]any) error { return nil }
	for b.Loop() {
		if err := g.Static(emit); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNew measures building the group and its staff.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		New(Config{Seed: 42, Patients: 758912})
	}
}
