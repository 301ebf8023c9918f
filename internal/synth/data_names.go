package synth

// Embedded name lists. Family names are ordered roughly by frequency in
// France (most frequent first) and sampled with a Zipf-like skew; given
// names are grouped by the birth cohort in which they were fashionable.
// All combinations are synthetic: no record describes a real person.

var familyNames = []string{
	"Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
	"Simon", "Michel", "Lefebvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard",
	"Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefèvre", "Faure", "André",
	"Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier", "François", "Legrand", "Gauthier", "Garcia",
	"Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson",
	"Marchand", "Duval", "Denis", "Dumont", "Marie", "Lemaire", "Noël", "Meyer", "Dufour", "Meunier",
	"Brun", "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud",
	"Martinez", "Gérard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron",
	"Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas", "Lacroix", "Olivier", "Philippe",
	"Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc", "Payet", "Rolland", "Leclercq", "Guillaume", "Lecomte",
	"Lopez", "Jean", "Dupuy", "Guillot", "Hubert", "Berger", "Carpentier", "Sanchez", "Dupuis", "Moulin",
	"Louis", "Deschamps", "Huet", "Vasseur", "Perez", "Boucher", "Fleury", "Royer", "Klein", "Jacquet",
	"Adam", "Paris", "Poirier", "Marty", "Aubry", "Guyot", "Carré", "Charles", "Renault", "Charpentier",
	"Ménard", "Maillard", "Baron", "Bertin", "Bailly", "Hervé", "Schneider", "Fernandez", "Le Gall", "Collet",
	"Léger", "Bouvier", "Julien", "Prévost", "Millet", "Perrot", "Daniel", "Le Roux", "Cousin", "Germain",
	"Breton", "Besson", "Langlois", "Rémy", "Le Goff", "Pelletier", "Lévêque", "Perrier", "Leblanc", "Barré",
	"Lebrun", "Marchal", "Weber", "Mallet", "Hamon", "Boulanger", "Jacob", "Monnier", "Michaud", "Rodriguez",
	"Guichard", "Gillet", "Étienne", "Grondin", "Poulain", "Tessier", "Chevallier", "Collin", "Chauvin", "Da Silva",
	"Bouchet", "Gay", "Lemaître", "Bénard", "Maréchal", "Humbert", "Reynaud", "Antoine", "Hoarau", "Perret",
	"Barthélemy", "Cordier", "Pichon", "Lejeune", "Gilbert", "Lamy", "Delaunay", "Pasquier", "Carlier", "Laporte",
	"Gonzalez", "Nguyen", "Pereira", "Ferreira", "Dos Santos", "Rodrigues", "Gomes", "Martins", "Lopes", "Fernandes",
	"Diallo", "Traoré", "Camara", "Diop", "Koné", "Ndiaye", "Cissé", "Sylla", "Touré", "Bamba",
	"Benali", "Haddad", "Mansouri", "Belkacem", "Bouzid", "Benaïssa", "Cherif", "Hamidi", "Khelifi", "Amrani",
	"Saïdi", "Boukhris", "Meziane", "Brahimi", "Zerrouki", "Cohen", "Lévy", "Benhamou", "Tran", "Pham",
	"Le", "Vu", "Hoang", "Chen", "Wang", "Lin", "Kaya", "Yilmaz", "Demir", "Silva",
	"Ollivier", "Charrier", "Bouvet", "Guillou", "Rivet", "Jourdan", "Hardy", "Vallée", "Guillon", "Moreno",
	"Marechal", "Bègue", "Gros", "Devaux", "Lebon", "Texier", "Lelièvre", "Barre", "Tanguy", "Boutin",
	"Colas", "Courtois", "Brunel", "Blondel", "Benard", "Carre", "Laine", "Besnard", "Riou", "Navarro",
	"Jacques", "Camus", "Lenoir", "Prevost", "Regnier", "Paul", "Lemonnier", "Bouquet", "Joubert", "Ferrand",
	"Hamel", "Poulet", "Laurens", "Leduc", "Marion", "Buisson", "Chauveau", "Lebreton", "Bodin", "Maillet",
	"Fleurier", "Delmas", "Voisin", "Fouquet", "Rossi", "Bellanger", "Delorme", "Raynaud", "Foucher", "Dumoulin",
	"Dubreuil", "Pons", "Vaillant", "Grand", "Lacombe", "Legros", "Favre", "Thibault", "Bigot", "Jolly",
	"Bousquet", "Tessier-Morel", "Lefort", "Dubost", "Auger", "Léonard", "Lecoq", "Girardin", "Cordonnier", "Marin",
	"Pineau", "Baudry", "Bazin", "Chauvet", "Tissot", "Hebert", "Delattre", "Salmon", "Grenier", "Gauthier-Lévy",
	"Mahé", "Le Bihan", "Le Guen", "Kerjean", "Le Floch", "Morvan", "Quéré", "Le Corre", "Garnier-Dupuis", "De Souza",
	"Pinto", "Teixeira", "Cardoso", "Ribeiro", "Almeida", "Carvalho", "Costa", "Marques", "Sousa", "Correia",
	"Dufresne", "Guillemin", "Lesage", "Pichard", "Vautrin", "Leclère", "Jolivet", "Duchêne", "Delage", "Lambertin",
}

var maleGiven = [3][]string{
	{ // before 1960
		"Jean", "Pierre", "Michel", "André", "Jacques", "René", "Louis", "Roger", "Marcel", "Bernard",
		"Claude", "Robert", "Henri", "Georges", "Paul", "Maurice", "Raymond", "Lucien", "Gérard", "Daniel",
		"Alain", "Guy", "Roland", "Gilbert", "Albert", "Fernand", "Émile", "Joseph", "Francis", "Yves",
		"Jean-Pierre", "Jean-Claude", "Jean-Louis", "Jean-Marie", "Jean-Paul", "Jean-Jacques", "Jean-François", "Serge", "Christian", "Gaston",
		"Léon", "Édouard", "Armand", "Norbert", "Hubert", "Gérald", "Jean-Michel", "Jean-Luc", "Jean-Yves", "Raoul",
		"Jean-Bernard", "Marius", "Aimé", "Félix", "Eugène", "Gustave", "Auguste", "Clément", "Jules", "Victor",
	},
	{ // 1960-1989
		"Philippe", "Patrick", "Christophe", "Stéphane", "Thierry", "Pascal", "Éric", "Frédéric", "Laurent", "Olivier",
		"Sébastien", "Nicolas", "David", "Franck", "Didier", "Dominique", "Vincent", "Bruno", "Jérôme", "Emmanuel",
		"Cédric", "Fabrice", "Julien", "Hervé", "Xavier", "Marc", "Gilles", "Denis", "Arnaud", "Guillaume",
		"Benoît", "Ludovic", "Yannick", "Jean-Marc", "Jean-Philippe", "Samuel", "Mickaël", "Grégory", "Romain", "Anthony",
		"Jérémy", "Mathieu", "Damien", "Karim", "Mohamed", "Rachid", "Antoine", "Alexandre", "Florent", "Sylvain",
		"Joël", "Régis", "Thibault", "François", "Lionel", "Loïc", "Fabien", "Cyril", "Yann", "Rémi",
	},
	{ // 1990 and later
		"Lucas", "Hugo", "Louis", "Gabriel", "Arthur", "Jules", "Raphaël", "Léo", "Adam", "Nathan",
		"Ethan", "Mathis", "Tom", "Théo", "Noah", "Maël", "Sacha", "Paul", "Timéo", "Enzo",
		"Clément", "Maxime", "Quentin", "Thomas", "Alexis", "Valentin", "Kévin", "Baptiste", "Dylan", "Axel",
		"Killian", "Mattéo", "Rayan", "Ayoub", "Yanis", "Ibrahim", "Mamadou", "Samy", "Nolan", "Aaron",
		"Eliott", "Victor", "Martin", "Marius", "Mathéo", "Antonin", "Gaspard", "Simon", "Pierre-Louis", "Jean-Baptiste",
		"Côme", "Augustin", "Malo", "Liam", "Noé", "Évan", "Lenny", "Bastien", "Corentin", "Florian",
		"Adrien", "Benjamin", "Yassine", "Ilyès", "Amir", "Moussa", "Tiago", "Lorenzo", "Joachim", "Aurélien",
	},
}

var femaleGiven = [3][]string{
	{ // before 1960
		"Marie", "Jeanne", "Monique", "Françoise", "Jacqueline", "Simone", "Denise", "Madeleine", "Yvette", "Suzanne",
		"Paulette", "Germaine", "Colette", "Odette", "Micheline", "Lucienne", "Hélène", "Nicole", "Josette", "Ginette",
		"Geneviève", "Christiane", "Renée", "Marcelle", "Andrée", "Huguette", "Raymonde", "Jeannine", "Danielle", "Annie",
		"Michèle", "Arlette", "Yvonne", "Marguerite", "Georgette", "Gisèle", "Lucette", "Solange", "Bernadette", "Thérèse",
		"Anne-Marie", "Marie-Thérèse", "Marie-Claude", "Marie-Louise", "Marie-France", "Éliane", "Claudine", "Liliane", "Mireille", "Janine",
		"Évelyne", "Henriette", "Louise", "Paule", "Irène", "Édith", "Odile", "Régine", "Marie-José", "Josiane",
	},
	{ // 1960-1989
		"Nathalie", "Isabelle", "Sylvie", "Catherine", "Valérie", "Sandrine", "Christine", "Véronique", "Céline", "Stéphanie",
		"Patricia", "Martine", "Laurence", "Corinne", "Virginie", "Karine", "Sophie", "Delphine", "Aurélie", "Caroline",
		"Émilie", "Julie", "Élodie", "Séverine", "Anne", "Carole", "Florence", "Brigitte", "Béatrice", "Dominique",
		"Pascale", "Marie-Christine", "Agnès", "Chantal", "Muriel", "Fabienne", "Myriam", "Nadia", "Fatima", "Samia",
		"Laëtitia", "Vanessa", "Mélanie", "Audrey", "Marion", "Claire", "Cécile", "Anne-Sophie", "Marie-Hélène", "Élisabeth",
		"Frédérique", "Ghislaine", "Annick", "Joëlle", "Gaëlle", "Magali", "Estelle", "Jennifer", "Amandine", "Hélène",
	},
	{ // 1990 and later
		"Emma", "Jade", "Louise", "Alice", "Chloé", "Léa", "Manon", "Inès", "Lina", "Léna",
		"Camille", "Sarah", "Zoé", "Juliette", "Lola", "Anna", "Rose", "Ambre", "Mila", "Lucie",
		"Clara", "Charlotte", "Mathilde", "Pauline", "Laura", "Margaux", "Océane", "Anaïs", "Marine", "Justine",
		"Eva", "Maëlys", "Romane", "Agathe", "Alicia", "Yasmine", "Aïcha", "Mariam", "Nour", "Salomé",
		"Elsa", "Capucine", "Victoire", "Apolline", "Héloïse", "Louna", "Margot", "Noémie", "Morgane", "Lisa",
		"Lou", "Nina", "Iris", "Adèle", "Gabrielle", "Léonie", "Constance", "Maëlle", "Cléa", "Élise",
		"Marie-Lou", "Sofia", "Hawa", "Fatoumata", "Ines", "Julia", "Emmy", "Lya", "Bérénice", "Anne-Laure",
	},
}

// nameEntry is a name with its ASCII-folded forms precomputed.
type nameEntry struct {
	name  string
	email string // lower-case ascii, hyphens kept, spaces/apostrophes dropped
	user  string // lower-case ascii letters only
}

var (
	familyEntries []nameEntry
	familyCum     []uint32
	maleEntries   [3][]nameEntry
	femaleEntries [3][]nameEntry
)

func makeEntries(names []string) []nameEntry {
	out := make([]nameEntry, len(names))
	for i, n := range names {
		out[i] = nameEntry{name: n, email: asciiFold(n, "-"), user: asciiFold(n, "")}
	}
	return out
}

func init() {
	familyEntries = makeEntries(familyNames)
	w := make([]float64, len(familyNames))
	for i := range w {
		// Zipf-like: the most frequent name is ~17x the least frequent.
		w[i] = 1.0 / float64(i+20)
	}
	familyCum = cumulative(w, 1e6)
	for e := 0; e < 3; e++ {
		maleEntries[e] = makeEntries(maleGiven[e])
		femaleEntries[e] = makeEntries(femaleGiven[e])
	}
}

func birthEra(year int) int {
	switch {
	case year < 1960:
		return 0
	case year < 1990:
		return 1
	}
	return 2
}

// pickGiven picks a given name fashionable in the birth cohort (80%) or any
// cohort (20%).
func pickGiven(r *rng, female bool, era int) *nameEntry {
	lists := &maleEntries
	if female {
		lists = &femaleEntries
	}
	if !r.chance(0.8) {
		era = r.intn(3)
	}
	l := lists[era]
	return &l[r.intn(len(l))]
}

func pickFamily(r *rng) *nameEntry {
	return &familyEntries[r.pickCum(familyCum)]
}
