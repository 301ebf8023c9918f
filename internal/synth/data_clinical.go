package synth

// Clinical vocabularies: ICD-10 (CIM-10) conditions with French displays,
// ATC-coded medications with French names, LOINC vital signs and CCAM-style
// billable acts.

const (
	sysICD10    = "http://hl7.org/fhir/sid/icd-10"
	sysATC      = "http://www.whocc.no/atc"
	sysLOINC    = "http://loinc.org"
	sysUCUM     = "http://unitsofmeasure.org"
	sysCCAM     = "https://carnet.example/ccam"
	sysActCode  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysCondClin = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVer  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	sysObsCat   = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysOrgType  = "http://terminology.hl7.org/CodeSystem/organization-type"
	sysRole     = "https://carnet.example/role"
	sysFacKind  = "https://carnet.example/facility-kind"
	sysStaff    = "https://carnet.example/staff"
	sysRPPS     = "urn:oid:1.2.250.1.71.4.2.1"
	sysFINESS   = "urn:oid:1.2.250.1.71.4.2.2"
	sysINSNIR   = "urn:oid:1.2.250.1.213.1.4.8"
)

type medication struct {
	atc    string
	name   string
	dosage string
	course bool // short treatment course (vs long-term)
	child  bool // paediatric form
}

var medications = []medication{
	{"N02BE01", "Paracétamol 1 g, comprimé", "1 comprimé jusqu'à 3 fois par jour si douleur ou fièvre, en espaçant les prises d'au moins 6 heures", true, false},
	{"M01AE01", "Ibuprofène 400 mg, comprimé", "1 comprimé 3 fois par jour au cours des repas pendant 5 jours", true, false},
	{"J01CA04", "Amoxicilline 1 g, comprimé dispersible", "1 comprimé matin et soir pendant 6 jours", true, false},
	{"J01CR02", "Amoxicilline/acide clavulanique 1 g/125 mg, sachet", "1 sachet 3 fois par jour pendant 7 jours", true, false},
	{"C09AA05", "Ramipril 5 mg, comprimé", "1 comprimé le matin", false, false},
	{"C08CA01", "Amlodipine 5 mg, gélule", "1 gélule par jour", false, false},
	{"C07AB07", "Bisoprolol 2,5 mg, comprimé", "1 comprimé le matin", false, false},
	{"A10BA02", "Metformine 850 mg, comprimé", "1 comprimé matin et soir au cours des repas", false, false},
	{"C10AA05", "Atorvastatine 20 mg, comprimé", "1 comprimé le soir", false, false},
	{"R03AC02", "Salbutamol 100 µg/dose, suspension pour inhalation", "1 à 2 bouffées en cas de gêne respiratoire", false, false},
	{"B01AF01", "Rivaroxaban 20 mg, comprimé", "1 comprimé par jour au cours du repas du soir", false, false},
	{"C03CA01", "Furosémide 40 mg, comprimé", "1 comprimé le matin", false, false},
	{"H03AA01", "Lévothyroxine sodique 75 µg, comprimé", "1 comprimé le matin à jeun", false, false},
	{"N06AB10", "Escitalopram 10 mg, comprimé", "1 comprimé par jour", false, false},
	{"N05BA12", "Alprazolam 0,25 mg, comprimé", "1 comprimé le soir si besoin, sans dépasser 3 comprimés par jour", true, false},
	{"N06DA02", "Donépézil 5 mg, comprimé", "1 comprimé le soir au coucher", false, false},
	{"A02BC01", "Oméprazole 20 mg, gélule", "1 gélule le matin à jeun", false, false},
	{"N05CF01", "Zopiclone 7,5 mg, comprimé", "1 comprimé au coucher, 14 jours maximum", true, false},
	{"N02AX02", "Tramadol 50 mg, gélule", "1 gélule toutes les 6 heures si douleur intense, 5 jours maximum", true, false},
	{"B01AB05", "Énoxaparine 4000 UI/0,4 mL, solution injectable", "1 injection sous-cutanée par jour pendant 10 jours", true, false},
	{"B01AC06", "Acide acétylsalicylique 75 mg, sachet", "1 sachet par jour", false, false},
	{"J01XX01", "Fosfomycine trométamol 3 g, granulés", "1 sachet en prise unique, le soir au coucher", true, false},
	{"A03AX12", "Phloroglucinol 80 mg, comprimé orodispersible", "2 comprimés en cas de douleur, 3 fois par jour maximum", true, false},
	{"A07XA04", "Racécadotril 100 mg, gélule", "1 gélule 3 fois par jour pendant 3 jours", true, false},
	{"R06AX27", "Desloratadine 5 mg, comprimé", "1 comprimé par jour pendant 10 jours", true, false},
	{"B03AA07", "Sulfate ferreux 80 mg, comprimé", "1 comprimé par jour pendant 3 mois", true, false},
	{"A11CC05", "Colécalciférol 100 000 UI, solution buvable", "1 ampoule tous les 3 mois", false, false},
	{"N02BE01", "Paracétamol 2,4 %, suspension buvable", "1 dose-poids toutes les 6 heures si fièvre", true, true},
	{"J01CA04", "Amoxicilline 250 mg/5 mL, poudre pour suspension buvable", "1 dose-poids matin, midi et soir pendant 6 jours", true, true},
}

// generic short-course medications prescribed without a coded condition
var genericMeds = []string{"N02BE01", "N02BE01", "M01AE01", "J01CA04", "A02BC01", "R06AX27", "A03AX12", "N02AX02"}

type condition struct {
	code, display string
	chronic       bool
	minAge        int
	maxAge        int
	sex           int // 0 any, 1 male, 2 female
	weight        int
	meds          []string // ATC codes
}

var conditions = []condition{
	{"I10", "Hypertension essentielle (primitive)", true, 35, 100, 0, 14, []string{"C09AA05", "C08CA01", "C07AB07"}},
	{"E11.9", "Diabète sucré de type 2, sans complication", true, 35, 100, 0, 8, []string{"A10BA02"}},
	{"E78.0", "Hypercholestérolémie essentielle", true, 35, 100, 0, 7, []string{"C10AA05"}},
	{"J45.9", "Asthme, sans précision", true, 4, 100, 0, 5, []string{"R03AC02"}},
	{"J44.9", "Maladie pulmonaire obstructive chronique, sans précision", true, 45, 100, 0, 3, []string{"R03AC02"}},
	{"I48.9", "Fibrillation et flutter auriculaires, sans précision", true, 55, 100, 0, 4, []string{"B01AF01", "C07AB07"}},
	{"I50.9", "Insuffisance cardiaque, sans précision", true, 60, 100, 0, 3, []string{"C03CA01", "C07AB07"}},
	{"E03.9", "Hypothyroïdie, sans précision", true, 20, 100, 2, 4, []string{"H03AA01"}},
	{"F32.9", "Épisode dépressif, sans précision", true, 15, 100, 0, 4, []string{"N06AB10"}},
	{"F41.1", "Anxiété généralisée", true, 15, 100, 0, 3, []string{"N05BA12"}},
	{"G30.9", "Maladie d'Alzheimer, sans précision", true, 65, 100, 0, 2, []string{"N06DA02"}},
	{"M17.9", "Gonarthrose, sans précision", true, 50, 100, 0, 4, []string{"N02BE01"}},
	{"K21.9", "Reflux gastro-œsophagien sans œsophagite", true, 18, 100, 0, 4, []string{"A02BC01"}},
	{"G47.0", "Troubles de l'endormissement et du maintien du sommeil [insomnies]", true, 18, 100, 0, 3, []string{"N05CF01"}},
	{"E66.9", "Obésité, sans précision", true, 10, 100, 0, 3, nil},
	{"N18.3", "Maladie rénale chronique, stade 3", true, 60, 100, 0, 2, nil},
	{"C50.9", "Tumeur maligne du sein, sans précision", true, 30, 100, 2, 2, nil},
	{"C61", "Tumeur maligne de la prostate", true, 50, 100, 1, 2, nil},
	{"M81.9", "Ostéoporose, sans précision", true, 55, 100, 2, 2, []string{"A11CC05"}},
	{"D50.9", "Anémie par carence en fer, sans précision", false, 0, 100, 0, 2, []string{"B03AA07"}},
	{"M54.5", "Lombalgie basse", false, 18, 100, 0, 7, []string{"N02BE01", "M01AE01"}},
	{"J06.9", "Infection aiguë des voies respiratoires supérieures, sans précision", false, 0, 100, 0, 8, []string{"N02BE01"}},
	{"J18.9", "Pneumopathie, sans précision", false, 0, 100, 0, 3, []string{"J01CR02", "N02BE01"}},
	{"J02.9", "Pharyngite aiguë, sans précision", false, 2, 100, 0, 4, []string{"J01CA04", "N02BE01"}},
	{"N39.0", "Infection des voies urinaires, siège non précisé", false, 15, 100, 2, 4, []string{"J01XX01"}},
	{"R51", "Céphalée", false, 6, 100, 0, 3, []string{"N02BE01"}},
	{"S52.5", "Fracture de l'extrémité inférieure du radius", false, 5, 100, 0, 2, []string{"N02BE01", "N02AX02"}},
	{"S82.6", "Fracture de la malléole externe", false, 10, 100, 0, 2, []string{"N02BE01", "B01AB05"}},
	{"S72.0", "Fracture du col du fémur", false, 65, 100, 0, 2, []string{"B01AB05", "N02BE01"}},
	{"K35.8", "Appendicite aiguë, autres et sans précision", false, 5, 70, 0, 2, []string{"J01CR02", "N02BE01"}},
	{"K80.2", "Calcul de la vésicule biliaire sans cholécystite", false, 25, 100, 0, 2, []string{"A03AX12"}},
	{"R10.4", "Douleurs abdominales, autres et non précisées", false, 3, 100, 0, 4, []string{"A03AX12", "N02BE01"}},
	{"A09.9", "Gastro-entérite et colite d'origine non précisée", false, 0, 100, 0, 4, []string{"A07XA04"}},
	{"O80", "Accouchement unique et spontané", false, 18, 45, 2, 3, []string{"N02BE01"}},
	{"I63.9", "Infarctus cérébral, sans précision", false, 55, 100, 0, 1, []string{"B01AC06", "C10AA05"}},
	{"I21.9", "Infarctus aigu du myocarde, sans précision", false, 40, 100, 0, 1, []string{"B01AC06", "C10AA05", "C07AB07"}},
	{"H66.9", "Otite moyenne, sans précision", false, 0, 12, 0, 4, []string{"J01CA04", "N02BE01"}},
	{"J21.9", "Bronchiolite aiguë, sans précision", false, 0, 2, 0, 3, []string{"N02BE01"}},
	{"L03.1", "Phlegmon d'autres parties d'un membre", false, 10, 100, 0, 1, []string{"J01CR02"}},
	{"T78.4", "Allergie, sans précision", false, 2, 100, 0, 2, []string{"R06AX27"}},
	{"R55", "Syncope et collapsus", false, 15, 100, 0, 2, nil},
}

var (
	condCum       []uint32
	condMedIdx    [][]int
	genericMedIdx []int
)

func medIndex(atc string, child bool) int {
	for i, m := range medications {
		if m.atc == atc && m.child == child {
			return i
		}
	}
	if child {
		return medIndex(atc, false)
	}
	panic("synth: unknown ATC " + atc)
}

func init() {
	w := make([]float64, len(conditions))
	condMedIdx = make([][]int, len(conditions))
	for i, c := range conditions {
		w[i] = float64(c.weight)
		for _, a := range c.meds {
			condMedIdx[i] = append(condMedIdx[i], medIndex(a, false))
		}
	}
	condCum = cumulative(w, 1)
	for _, a := range genericMeds {
		genericMedIdx = append(genericMedIdx, medIndex(a, false))
	}
}

// adaptMed swaps an adult form for its paediatric form for young children.
func adaptMed(idx int, age int) int {
	if age >= 12 {
		return idx
	}
	return medIndex(medications[idx].atc, true)
}

type vital struct {
	loinc, display, text string
	unit, ucum           string
	weight               int
}

const (
	vitHeartRate = iota
	vitSystolic
	vitDiastolic
	vitWeight
	vitHeight
	vitTemp
	vitSpO2
	vitResp
)

var vitals = []vital{
	{"8867-4", "Heart rate", "Fréquence cardiaque", "/min", "/min", 6},
	{"8480-6", "Systolic blood pressure", "Pression artérielle systolique", "mm[Hg]", "mm[Hg]", 5},
	{"8462-4", "Diastolic blood pressure", "Pression artérielle diastolique", "mm[Hg]", "mm[Hg]", 3},
	{"29463-7", "Body weight", "Poids", "kg", "kg", 5},
	{"8302-2", "Body height", "Taille", "cm", "cm", 2},
	{"8310-5", "Body temperature", "Température corporelle", "°C", "Cel", 4},
	{"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "Saturation en oxygène (SpO2)", "%", "%", 3},
	{"9279-1", "Respiratory rate", "Fréquence respiratoire", "/min", "/min", 2},
}

type act struct {
	code, display string
	price         float64
}

// CCAM-style acts (4 letters + 3 digits) per encounter class. The code
// system is local to Carnet; prices are plausible tariffs in EUR.
var ambActs = []act{
	{"YYYY001", "Consultation de médecine générale", 30.00},
	{"YYYY002", "Consultation de spécialiste", 56.50},
	{"DEQP003", "Électrocardiographie sur au moins 12 dérivations", 14.26},
	{"ZBQK002", "Radiographie du thorax", 21.28},
	{"ZCQM004", "Échographie transcutanée de l'abdomen", 56.70},
	{"QZFA031", "Exérèse de lésion superficielle de la peau", 41.80},
	{"GLQP012", "Exploration fonctionnelle respiratoire", 40.28},
	{"NZQK001", "Radiographie du genou", 19.95},
}

var emerActs = []act{
	{"YYYY010", "Forfait accueil et traitement des urgences", 19.61},
	{"YYYY011", "Passage aux urgences avec imagerie", 84.30},
	{"QZJA002", "Parage et suture de plaie superficielle de la peau", 48.46},
	{"MZMP002", "Confection d'un appareil rigide d'immobilisation", 62.70},
	{"ZBQK002", "Radiographie du thorax", 21.28},
}

var impActs = []act{
	{"HHFA016", "Appendicectomie par cœlioscopie", 2860.00},
	{"HMFC004", "Cholécystectomie par cœlioscopie", 3420.00},
	{"NEKA020", "Remplacement de l'articulation coxofémorale par prothèse totale", 7850.00},
	{"NFKA008", "Remplacement de l'articulation du genou par prothèse totale", 8120.00},
	{"YYYY020", "Séjour d'hospitalisation en médecine", 1480.00},
	{"YYYY021", "Séjour d'hospitalisation en soins de suite", 2240.00},
	{"JQGD010", "Accouchement unique par voie naturelle", 2560.00},
}

var ehpadActs = []act{
	{"YYYY030", "Visite du médecin coordonnateur", 30.00},
	{"YYYY031", "Bilan gériatrique standardisé", 60.00},
	{"YYYY032", "Soins infirmiers techniques", 15.00},
}
