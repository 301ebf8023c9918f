package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// Synthetic data for the peer's seed and for the create workload: the same
// kind of records Carnet's own seed makes (French-style demographics), built
// here so that the harness does not depend on the server's packages.

var families = []string{
	"Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
	"Simon", "Michel", "Lefebvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard",
	"Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefevre", "Faure", "Andre",
	"Mercier", "Blanc", "Guerin", "Boyer", "Garnier", "Chevalier", "Francois", "Legrand", "Gauthier", "Garcia",
	"Perrin", "Robin", "Clement", "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson",
	"Marchand", "Duval", "Denis", "Dumont", "Marie", "Lemaire", "Noel", "Meyer", "Dufour", "Meunier",
	"Brun", "Blanchard", "Giraud", "Joly", "Riviere", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud",
	"Martinez", "Gerard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron",
	"Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas", "Lacroix", "Olivier", "Philippe",
	"Bourgeois", "Pierre", "Benoit", "Rey", "Leclerc", "Payet", "Rolland", "Leclercq", "Guillaume", "Lecomte",
}

var givenF = []string{"Marie", "Jeanne", "Camille", "Louise", "Alice", "Chloe", "Emma", "Lea", "Manon", "Sophie", "Claire", "Julie", "Anne", "Isabelle", "Nathalie"}
var givenM = []string{"Jean", "Pierre", "Louis", "Lucas", "Hugo", "Paul", "Jules", "Thomas", "Nicolas", "Antoine", "Michel", "Philippe", "Alain", "Julien", "Marc"}
var cities = []struct{ city, postal string }{
	{"Paris", "75011"}, {"Lyon", "69003"}, {"Marseille", "13005"}, {"Toulouse", "31000"}, {"Nantes", "44000"},
	{"Lille", "59000"}, {"Bordeaux", "33000"}, {"Rennes", "35000"}, {"Strasbourg", "67000"}, {"Dijon", "21000"},
}
var streets = []string{"rue de la Paix", "avenue Jean Jaures", "boulevard Voltaire", "rue Victor Hugo", "place de la Republique", "rue des Lilas"}

type synthPatient struct {
	Family string
	Body   []byte
}

// newPatient returns a Patient JSON body; mrn makes its identifier unique.
func newPatient(rng *rand.Rand, mrn string) synthPatient {
	fam := families[rng.IntN(len(families))]
	gender := "female"
	given := givenF[rng.IntN(len(givenF))]
	if rng.IntN(2) == 0 {
		gender = "male"
		given = givenM[rng.IntN(len(givenM))]
	}
	c := cities[rng.IntN(len(cities))]
	p := map[string]any{
		"resourceType": "Patient",
		"identifier": []any{map[string]any{
			"system": "urn:carnet:bench:mrn",
			"value":  mrn,
		}},
		"active": true,
		"name": []any{map[string]any{
			"use":    "official",
			"family": fam,
			"given":  []string{given},
		}},
		"gender":    gender,
		"birthDate": fmt.Sprintf("%04d-%02d-%02d", 1930+rng.IntN(90), 1+rng.IntN(12), 1+rng.IntN(28)),
		"telecom": []any{map[string]any{
			"system": "phone",
			"value":  fmt.Sprintf("+33 6 %02d %02d %02d %02d", rng.IntN(100), rng.IntN(100), rng.IntN(100), rng.IntN(100)),
			"use":    "mobile",
		}},
		"address": []any{map[string]any{
			"line":       []string{fmt.Sprintf("%d %s", 1+rng.IntN(120), streets[rng.IntN(len(streets))])},
			"city":       c.city,
			"postalCode": c.postal,
			"country":    "FR",
		}},
	}
	b, _ := json.Marshal(p)
	return synthPatient{Family: fam, Body: b}
}

var encClasses = []struct{ code, display string }{
	{"AMB", "ambulatory"}, {"IMP", "inpatient encounter"}, {"EMER", "emergency"},
}

// newEncounter returns an Encounter JSON body for the patient reference ref
// ("Patient/123").
func newEncounter(rng *rand.Rand, ref string) []byte {
	cl := encClasses[rng.IntN(len(encClasses))]
	y, m, d := 2015+rng.IntN(10), 1+rng.IntN(12), 1+rng.IntN(28)
	h := 7 + rng.IntN(10)
	e := map[string]any{
		"resourceType": "Encounter",
		"status":       "finished",
		"class": map[string]any{
			"system":  "http://terminology.hl7.org/CodeSystem/v3-ActCode",
			"code":    cl.code,
			"display": cl.display,
		},
		"subject": map[string]any{"reference": ref},
		"period": map[string]any{
			"start": fmt.Sprintf("%04d-%02d-%02dT%02d:00:00+01:00", y, m, d, h),
			"end":   fmt.Sprintf("%04d-%02d-%02dT%02d:30:00+01:00", y, m, d, h+1),
		},
	}
	b, _ := json.Marshal(e)
	return b
}
