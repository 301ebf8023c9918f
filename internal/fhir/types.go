package fhir

import "slices"

// r4Types lists every FHIR R4 (4.0.1) resource type, to tell "not a FHIR type"
// apart from "a FHIR type Carnet does not store".
var r4Types = []string{
	"Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse",
	"AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct", "BodyStructure", "Bundle", "CapabilityStatement",
	"CarePlan", "CareTeam", "CatalogEntry", "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse",
	"ClinicalImpression", "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition", "Composition",
	"ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
	"CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric", "DeviceRequest",
	"DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference", "EffectEvidenceSynthesis",
	"Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EpisodeOfCare", "EventDefinition", "Evidence",
	"EvidenceVariable", "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
	"GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy", "Immunization",
	"ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide", "InsurancePlan", "Invoice", "Library",
	"Linkage", "List", "Location", "Measure", "MeasureReport", "Media", "Medication", "MedicationAdministration",
	"MedicationDispense", "MedicationKnowledge", "MedicationRequest", "MedicationStatement", "MedicinalProduct",
	"MedicinalProductAuthorization", "MedicinalProductContraindication", "MedicinalProductIndication",
	"MedicinalProductIngredient", "MedicinalProductInteraction", "MedicinalProductManufactured",
	"MedicinalProductPackaged", "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect",
	"MessageDefinition", "MessageHeader", "MolecularSequence", "NamingSystem", "NutritionOrder", "Observation",
	"ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization", "OrganizationAffiliation",
	"Parameters", "Patient", "PaymentNotice", "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner",
	"PractitionerRole", "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse", "RelatedPerson",
	"RequestGroup", "ResearchDefinition", "ResearchElementDefinition", "ResearchStudy", "ResearchSubject",
	"RiskAssessment", "RiskEvidenceSynthesis", "Schedule", "SearchParameter", "ServiceRequest", "Slot", "Specimen",
	"SpecimenDefinition", "StructureDefinition", "StructureMap", "Subscription", "Substance", "SubstanceNucleicAcid",
	"SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation", "SubstanceSourceMaterial",
	"SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task", "TerminologyCapabilities", "TestReport",
	"TestScript", "ValueSet", "VerificationResult", "VisionPrescription",
}

// IsR4Type reports whether t is a FHIR R4 resource type name.
func IsR4Type(t string) bool { _, ok := slices.BinarySearch(r4Types, t); return ok }

// TypeInfo describes a resource type Carnet stores.
type TypeInfo struct {
	Name string
	// PatientRef is the element holding the reference that puts a resource in a
	// patient's compartment ("subject", "patient"); "" for Patient itself and
	// for types outside any patient compartment.
	PatientRef string
	// Clinical marks types whose content is clinical (as opposed to
	// demographics, billing or administration); later access rules use it.
	Category Category
}

// Category groups resource types by the kind of data they disclose.
type Category string

// Data categories, as reported by incident scoping.
const (
	CatAdmin        Category = "administration" // organisations, staff: no patient data
	CatIdentity     Category = "identity"
	CatClinical     Category = "clinical"
	CatPrescription Category = "prescriptions"
	CatBilling      Category = "billing"
)

var typeTable = []TypeInfo{
	{"Organization", "", CatAdmin},
	{"Location", "", CatAdmin},
	{"Practitioner", "", CatAdmin},
	{"PractitionerRole", "", CatAdmin},
	{"Medication", "", CatAdmin},
	{"Patient", "", CatIdentity},
	{"RelatedPerson", "patient", CatIdentity},
	{"Encounter", "subject", CatClinical},
	{"EpisodeOfCare", "patient", CatClinical},
	{"CareTeam", "subject", CatClinical},
	{"Condition", "subject", CatClinical},
	{"Observation", "subject", CatClinical},
	{"DiagnosticReport", "subject", CatClinical},
	{"Procedure", "subject", CatClinical},
	{"AllergyIntolerance", "patient", CatClinical},
	{"Immunization", "patient", CatClinical},
	{"ServiceRequest", "subject", CatClinical},
	{"DocumentReference", "subject", CatClinical},
	{"Flag", "subject", CatClinical},
	{"MedicationRequest", "subject", CatPrescription},
	{"MedicationAdministration", "subject", CatPrescription},
	{"MedicationStatement", "subject", CatPrescription},
	{"ChargeItem", "subject", CatBilling},
	{"Invoice", "subject", CatBilling},
	{"Account", "subject", CatBilling},
	{"Coverage", "beneficiary", CatBilling},
}

var typeIndex = func() map[string]*TypeInfo {
	m := make(map[string]*TypeInfo, len(typeTable))
	for i := range typeTable {
		m[typeTable[i].Name] = &typeTable[i]
	}
	return m
}()

// LookupType returns the TypeInfo of a stored type, or nil.
func LookupType(name string) *TypeInfo { return typeIndex[name] }

// StoredTypes lists the types Carnet stores, in a stable order.
func StoredTypes() []TypeInfo { return slices.Clone(typeTable) }

// CheckType returns nil if t is a type Carnet stores, else a 404 error that
// says whether t is an unsupported FHIR type or not a FHIR type at all.
func CheckType(t string) *Error {
	if typeIndex[t] != nil {
		return nil
	}
	if IsR4Type(t) {
		return Errorf(404, "not-supported", "resource type %q is not supported by this server", t)
	}
	return Errorf(404, "not-found", "unknown resource type %q", t)
}

// PatientOf returns the id of the patient whose compartment r belongs to, or "".
func PatientOf(r Resource) string {
	t := Type(r)
	if t == "Patient" {
		return ID(r)
	}
	ti := typeIndex[t]
	if ti == nil || ti.PatientRef == "" {
		return ""
	}
	for _, v := range flatten(r[ti.PatientRef]) {
		m, _ := v.(map[string]any)
		ref, _ := m["reference"].(string)
		if rt, id, ok := SplitReference(ref); ok && rt == "Patient" {
			return id
		}
	}
	return ""
}
