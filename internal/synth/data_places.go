package synth

// Places: communes of Paris and the south of the Paris region with their
// postal codes, street names, and the 17 synthetic facilities.

type city struct {
	postal string
	name   string
	dept   string // "75", "91", "92", "94"
	weight float64
}

var cities = []city{
	// Paris (arrondissements of the south and east carry more weight).
	{"75005", "Paris", "75", 1}, {"75006", "Paris", "75", 0.8}, {"75007", "Paris", "75", 0.8},
	{"75011", "Paris", "75", 2.5}, {"75012", "Paris", "75", 2.5}, {"75013", "Paris", "75", 3},
	{"75014", "Paris", "75", 2.5}, {"75015", "Paris", "75", 3.5}, {"75016", "Paris", "75", 2},
	{"75018", "Paris", "75", 2.5}, {"75019", "Paris", "75", 2.2}, {"75020", "Paris", "75", 2.4},
	// Hauts-de-Seine (92)
	{"92160", "Antony", "92", 1.6}, {"92140", "Clamart", "92", 1.2}, {"92320", "Châtillon", "92", 0.8},
	{"92120", "Montrouge", "92", 1}, {"92340", "Bourg-la-Reine", "92", 0.5}, {"92330", "Sceaux", "92", 0.5},
	{"92100", "Boulogne-Billancourt", "92", 2.4}, {"92130", "Issy-les-Moulineaux", "92", 1.4}, {"92170", "Vanves", "92", 0.6},
	{"92240", "Malakoff", "92", 0.7}, {"92190", "Meudon", "92", 1.1}, {"92290", "Châtenay-Malabry", "92", 0.8},
	{"92350", "Le Plessis-Robinson", "92", 0.7}, {"92260", "Fontenay-aux-Roses", "92", 0.5}, {"92220", "Bagneux", "92", 0.9},
	{"92000", "Nanterre", "92", 1.9}, {"92500", "Rueil-Malmaison", "92", 1.6}, {"92310", "Sèvres", "92", 0.5},
	// Val-de-Marne (94)
	{"94000", "Créteil", "94", 1.8}, {"94800", "Villejuif", "94", 1.2}, {"94200", "Ivry-sur-Seine", "94", 1.3},
	{"94400", "Vitry-sur-Seine", "94", 1.8}, {"94270", "Le Kremlin-Bicêtre", "94", 0.6}, {"94600", "Choisy-le-Roi", "94", 0.9},
	{"94320", "Thiais", "94", 0.6}, {"94240", "L'Haÿ-les-Roses", "94", 0.7}, {"94230", "Cachan", "94", 0.7},
	{"94110", "Arcueil", "94", 0.5}, {"94250", "Gentilly", "94", 0.4}, {"94550", "Chevilly-Larue", "94", 0.4},
	{"94260", "Fresnes", "94", 0.6}, {"94310", "Orly", "94", 0.6}, {"94190", "Villeneuve-Saint-Georges", "94", 0.8},
	{"94700", "Maisons-Alfort", "94", 1.1}, {"94100", "Saint-Maur-des-Fossés", "94", 1.5}, {"94300", "Vincennes", "94", 1},
	{"94500", "Champigny-sur-Marne", "94", 1.5}, {"94140", "Alfortville", "94", 0.9}, {"94370", "Sucy-en-Brie", "94", 0.5},
	// Essonne (91)
	{"91000", "Évry-Courcouronnes", "91", 1.4}, {"91300", "Massy", "91", 1.0}, {"91120", "Palaiseau", "91", 0.7},
	{"91260", "Juvisy-sur-Orge", "91", 0.4}, {"91100", "Corbeil-Essonnes", "91", 1}, {"91600", "Savigny-sur-Orge", "91", 0.7},
	{"91160", "Longjumeau", "91", 0.4}, {"91400", "Orsay", "91", 0.3}, {"91940", "Les Ulis", "91", 0.5},
	{"91150", "Étampes", "91", 0.5}, {"91220", "Brétigny-sur-Orge", "91", 0.5}, {"91200", "Athis-Mons", "91", 0.6},
	{"91210", "Draveil", "91", 0.6}, {"91700", "Sainte-Geneviève-des-Bois", "91", 0.7}, {"91290", "Arpajon", "91", 0.2},
	{"91230", "Montgeron", "91", 0.5}, {"91330", "Yerres", "91", 0.5}, {"91130", "Ris-Orangis", "91", 0.5},
	{"91170", "Viry-Châtillon", "91", 0.6}, {"91380", "Chilly-Mazarin", "91", 0.4}, {"91190", "Gif-sur-Yvette", "91", 0.4},
	{"91370", "Verrières-le-Buisson", "91", 0.3}, {"91800", "Brunoy", "91", 0.5}, {"91270", "Vigneux-sur-Seine", "91", 0.6},
}

var parisStreets = []string{
	"rue de Vaugirard", "rue de la Convention", "avenue d'Italie", "rue de Tolbiac", "boulevard Raspail",
	"rue d'Alésia", "rue Daguerre", "avenue du Maine", "rue de Charenton", "rue de Bercy",
	"avenue Daumesnil", "rue Lecourbe", "rue de la Croix-Nivert", "rue Saint-Jacques", "rue Mouffetard",
	"boulevard Voltaire", "rue de la Roquette", "avenue de la République", "rue Oberkampf", "rue des Pyrénées",
	"rue de Belleville", "avenue Jean-Jaurès", "rue de Crimée", "rue Ordener", "rue Caulaincourt",
	"rue de Passy", "avenue Mozart", "rue de la Pompe", "boulevard de Port-Royal", "rue de Rennes",
	"rue du Cherche-Midi", "rue Cler", "avenue Bosquet", "rue Nationale", "boulevard Auguste-Blanqui",
	"rue de la Glacière", "avenue de Choisy", "rue du Château-des-Rentiers", "rue de Picpus", "boulevard de Reuilly",
}

var suburbStreets = []string{
	"rue de la République", "avenue du Général-Leclerc", "rue Victor-Hugo", "boulevard Jean-Jaurès", "rue Pasteur",
	"avenue de Paris", "rue de la Gare", "allée des Tilleuls", "place de la Mairie", "rue Jules-Ferry",
	"rue du Moulin", "impasse des Lilas", "chemin des Vignes", "rue Gambetta", "avenue Aristide-Briand",
	"rue Émile-Zola", "rue Voltaire", "rue Anatole-France", "avenue Pierre-Brossolette", "rue de l'Église",
	"rue des Écoles", "rue du Château", "rue Paul-Vaillant-Couturier", "avenue de la Division-Leclerc", "rue Henri-Barbusse",
	"boulevard de la Libération", "rue Gabriel-Péri", "avenue de Verdun", "rue Jean-Moulin", "allée des Acacias",
	"rue des Marronniers", "rue du Maréchal-Foch", "avenue Charles-de-Gaulle", "rue Louis-Pasteur", "sentier des Peupliers",
	"rue de Fontenay", "rue des Rosiers", "avenue du Président-Wilson", "rue Marcel-Sembat", "résidence du Parc",
}

// facility kinds
const (
	kindClinic = iota
	kindHealthCentre
	kindRetirement
)

var kindNames = [...]string{"clinic", "health-centre", "retirement-home"}
var kindDisplays = [...]string{"Clinique", "Centre de santé", "EHPAD (maison de retraite médicalisée)"}

type facilitySpec struct {
	name   string
	kind   int
	code   string
	line   string
	postal string
	staff  int     // staff head-count
	weight float64 // share of patients whose home facility it is (non-residents)
}

// The 17 facilities: 10 clinics, 4 health centres (14 care sites) and 3
// retirement homes. Names and addresses are synthetic.
var facilitySpecs = []facilitySpec{
	{"Clinique Carnet Paris Montsouris", kindClinic, "cl-paris14", "42 rue d'Alésia", "75014", 210, 12},
	{"Clinique Carnet Paris Bercy", kindClinic, "cl-paris12", "118 rue de Charenton", "75012", 190, 11},
	{"Clinique Carnet Paris Vaugirard", kindClinic, "cl-paris15", "251 rue de Vaugirard", "75015", 170, 10},
	{"Clinique Carnet Antony", kindClinic, "cl-antony", "7 avenue du Général-Leclerc", "92160", 150, 8},
	{"Clinique Carnet Clamart", kindClinic, "cl-clamart", "15 rue de la Gare", "92140", 140, 7},
	{"Clinique Carnet Créteil", kindClinic, "cl-creteil", "3 boulevard de la Libération", "94000", 150, 8},
	{"Clinique Carnet Villejuif", kindClinic, "cl-villejuif", "60 rue Jean-Moulin", "94800", 160, 8},
	{"Clinique Carnet Évry", kindClinic, "cl-evry", "12 avenue de Paris", "91000", 130, 7},
	{"Clinique Carnet Massy", kindClinic, "cl-massy", "24 rue Victor-Hugo", "91300", 140, 7},
	{"Clinique Carnet Juvisy", kindClinic, "cl-juvisy", "9 rue Pasteur", "91260", 120, 6},
	{"Centre de santé Carnet Paris 13", kindHealthCentre, "cs-paris13", "88 avenue de Choisy", "75013", 48, 4},
	{"Centre de santé Carnet Montrouge", kindHealthCentre, "cs-montrouge", "31 avenue de la République", "92120", 44, 3},
	{"Centre de santé Carnet Ivry", kindHealthCentre, "cs-ivry", "5 rue Marcel-Sembat", "94200", 44, 3},
	{"Centre de santé Carnet Palaiseau", kindHealthCentre, "cs-palaiseau", "17 rue de l'Église", "91120", 44, 3},
	{"EHPAD Carnet Les Tilleuls", kindRetirement, "ehpad-sceaux", "2 allée des Tilleuls", "92330", 82, 0},
	{"EHPAD Carnet Les Glycines", kindRetirement, "ehpad-saint-maur", "14 rue des Rosiers", "94100", 80, 0},
	{"EHPAD Carnet Le Parc", kindRetirement, "ehpad-savigny", "1 résidence du Parc", "91600", 78, 0},
}

var (
	cityCum     []uint32
	deptCities  = map[string][]int{}
	deptCityCum = map[string][]uint32{}
)

func init() {
	w := make([]float64, len(cities))
	for i, c := range cities {
		w[i] = c.weight
		deptCities[c.dept] = append(deptCities[c.dept], i)
	}
	cityCum = cumulative(w, 1000)
	for d, idx := range deptCities {
		dw := make([]float64, len(idx))
		for j, i := range idx {
			dw[j] = cities[i].weight
		}
		deptCityCum[d] = cumulative(dw, 1000)
	}
}

func cityByPostal(postal string) int {
	for i, c := range cities {
		if c.postal == postal {
			return i
		}
	}
	panic("synth: unknown postal code " + postal)
}

// Birth département for the NIR: Paris region mostly, then the rest of
// metropolitan France (Corsica excluded) and 99 (born abroad).
var nirDepts = []struct {
	code   string
	weight float64
}{
	{"75", 30}, {"92", 10}, {"93", 7}, {"94", 9}, {"91", 8}, {"78", 4}, {"77", 3}, {"95", 3},
	{"59", 1.5}, {"69", 1.5}, {"13", 1.5}, {"33", 1}, {"31", 1}, {"44", 1}, {"35", 1}, {"29", 1},
	{"62", 0.8}, {"76", 0.8}, {"67", 0.8}, {"57", 0.7}, {"45", 0.7}, {"28", 0.6}, {"60", 0.7}, {"51", 0.5},
	{"14", 0.5}, {"37", 0.5}, {"49", 0.5}, {"63", 0.4}, {"87", 0.3}, {"21", 0.4}, {"25", 0.4}, {"38", 0.6},
	{"06", 0.6}, {"34", 0.6}, {"30", 0.4}, {"64", 0.4}, {"56", 0.4}, {"22", 0.4}, {"50", 0.3}, {"80", 0.4},
	{"02", 0.3}, {"10", 0.2}, {"18", 0.2}, {"03", 0.2}, {"01", 0.3}, {"72", 0.4}, {"86", 0.3}, {"17", 0.3},
	{"99", 9},
}

var nirDeptCum []uint32

// Country codes (INSEE) used as the "commune" part for people born abroad.
var nirCountries = []string{"350", "352", "351", "139", "134", "341", "326", "335", "243", "131", "109", "127", "208", "223"}

func init() {
	w := make([]float64, len(nirDepts))
	for i, d := range nirDepts {
		w[i] = d.weight
	}
	nirDeptCum = cumulative(w, 100)
}
