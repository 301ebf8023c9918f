package synth

// Static emits the group Organization, the 17 facility Organizations, then
// every Practitioner, each followed by its PractitionerRoles (one per
// facility the staff member works in; group-level staff get one role at
// the group Organization).
func (g *Group) Static(emit func(map[string]any) error) error {
	r := newRNG(g.key ^ 0x57A71C)
	if err := emit(g.groupOrganization(&r)); err != nil {
		return err
	}
	for f := range g.fac {
		if err := emit(g.facilityOrganization(&r, f)); err != nil {
			return err
		}
	}
	for i := range g.Staff {
		if err := emit(g.practitioner(i)); err != nil {
			return err
		}
		for k, org := range g.Staff[i].Facilities {
			if err := emit(g.practitionerRole(i, k, org)); err != nil {
				return err
			}
		}
	}
	return nil
}

func coding(system, code, display string) map[string]any {
	return map[string]any{"system": system, "code": code, "display": display}
}

func concept(system, code, display, text string) map[string]any {
	c := map[string]any{"coding": []any{coding(system, code, display)}}
	if text != "" {
		c["text"] = text
	}
	return c
}

func ref(s any) map[string]any { return map[string]any{"reference": s} }

// fictionPhone returns a landline in the 01 99 00 xx xx range (reserved
// for fiction).
func fictionPhone(r *rng) string {
	b := make([]byte, 0, 14)
	b = append(b, "01 99 00 "...)
	b = append2(b, r.intn(100))
	b = append(b, ' ')
	b = append2(b, r.intn(100))
	return string(b)
}

func orgType() map[string]any {
	return concept(sysOrgType, "prov", "Healthcare Provider", "")
}

func (g *Group) groupOrganization(r *rng) map[string]any {
	return map[string]any{
		"resourceType": "Organization",
		"id":           g.groupID,
		"active":       true,
		"identifier": []any{map[string]any{
			"use":    "official",
			"system": sysFINESS,
			"value":  g.groupFI,
		}},
		"type":  []any{orgType()},
		"name":  GroupName,
		"alias": []any{"Groupe Carnet"},
		"telecom": []any{
			map[string]any{"system": "phone", "value": fictionPhone(r), "use": "work"},
			map[string]any{"system": "email", "value": "contact@carnet.example", "use": "work"},
		},
		"address": []any{map[string]any{
			"use":        "work",
			"type":       "both",
			"line":       []any{"20 boulevard Auguste-Blanqui"},
			"city":       "Paris",
			"postalCode": "75013",
			"country":    "FR",
		}},
	}
}

func (g *Group) facilityOrganization(r *rng, f int) map[string]any {
	fi := &g.fac[f]
	sp := fi.spec
	c := &cities[fi.cityIdx]
	return map[string]any{
		"resourceType": "Organization",
		"id":           fi.id,
		"active":       true,
		"identifier": []any{map[string]any{
			"use":    "official",
			"system": sysFINESS,
			"value":  fi.finess,
		}},
		"type": []any{
			orgType(),
			concept(sysFacKind, kindNames[sp.kind], kindDisplays[sp.kind], ""),
		},
		"name": sp.name,
		"telecom": []any{
			map[string]any{"system": "phone", "value": fictionPhone(r), "use": "work"},
			map[string]any{"system": "email", "value": "accueil." + sp.code + "@carnet.example", "use": "work"},
		},
		"address": []any{map[string]any{
			"use":        "work",
			"type":       "both",
			"line":       []any{sp.line},
			"city":       c.name,
			"postalCode": c.postal,
			"country":    "FR",
		}},
		"partOf": ref("Organization/" + g.groupID),
	}
}

func (g *Group) practitioner(i int) map[string]any {
	s := &g.Staff[i]
	si := &g.st[i]
	var ident map[string]any
	if si.rpps != "" {
		ident = map[string]any{"use": "official", "system": sysRPPS, "value": si.rpps}
	} else {
		ident = map[string]any{"use": "usual", "system": sysStaff, "value": si.local}
	}
	name := map[string]any{
		"use":    "official",
		"family": s.FamilyName,
		"given":  []any{s.GivenName},
		"text":   s.GivenName + " " + s.FamilyName,
	}
	if s.Roles[0] == RolePhysician || s.Roles[0] == RolePharmacist {
		name["prefix"] = []any{"Dr"}
	}
	gender := "male"
	if si.female {
		gender = "female"
	}
	return map[string]any{
		"resourceType": "Practitioner",
		"id":           s.PractitionerID,
		"active":       true,
		"identifier":   []any{ident},
		"name":         []any{name},
		"gender":       gender,
		"telecom": []any{map[string]any{
			"system": "email", "value": s.Username + "@carnet.example", "use": "work",
		}},
	}
}

func (g *Group) practitionerRole(i, k int, org string) map[string]any {
	s := &g.Staff[i]
	codes := make([]any, 0, len(s.Roles))
	for _, role := range s.Roles {
		codes = append(codes, concept(sysRole, role, roleDisplay[role], roleDisplay[role]))
	}
	return map[string]any{
		"resourceType": "PractitionerRole",
		"id":           uuidFrom(g.key, g.key2, domRole|uint64(i), uint64(k)),
		"active":       true,
		"practitioner": ref(g.st[i].ref),
		"organization": ref("Organization/" + org),
		"code":         codes,
	}
}
