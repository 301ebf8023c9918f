package web

// catalog maps a message key to its French and English text.
type catalog map[string][2]string

// t returns key's text in lang (French unless "en"); an unknown key shows
// as itself (TestMessages fails on any).
func (c catalog) t(lang, key string) string {
	m, ok := c[key]
	if !ok {
		return key
	}
	if lang == "en" {
		return m[1]
	}
	return m[0]
}

// messages merges the catalogs of every group of pages.
func messages() catalog {
	all := catalog{}
	for _, c := range []catalog{coreMessages, adminMessages, chartMessages} {
		for k, v := range c {
			all[k] = v
		}
	}
	return all
}

var coreMessages = catalog{
	"nav.skip":      {"Aller au contenu", "Skip to content"},
	"nav.label":     {"Navigation principale", "Main navigation"},
	"nav.patients":  {"Patients", "Patients"},
	"nav.admission": {"Admission", "Admission"},
	"nav.admin":     {"Administration", "Administration"},
	"nav.security":  {"Sécurité", "Security"},
	"nav.logout":    {"Se déconnecter", "Log out"},
	"footer.audit":  {"Chaque consultation d'un dossier est enregistrée dans le journal d'accès.", "Every access to a record is written to the access log."},

	"session.soon":  {"Votre session se termine dans %d min.", "Your session ends in %d min."},
	"session.ended": {"Votre session est terminée.", "Your session has ended."},
	"session.stay":  {"Rester connecté", "Stay signed in"},

	"login.title":           {"Connexion", "Sign in"},
	"login.username":        {"Identifiant", "Username"},
	"login.password":        {"Mot de passe", "Password"},
	"login.continue":        {"Continuer", "Continue"},
	"login.code":            {"Code à usage unique", "One-time code"},
	"login.code-help":       {"Saisissez le code à 6 chiffres affiché par votre application d'authentification.", "Type the 6-digit code your authenticator app shows."},
	"login.recovery-hint":   {"Téléphone perdu ? Saisissez l'un de vos codes de secours.", "Lost your phone? Type one of your recovery codes."},
	"login.verify":          {"Vérifier", "Verify"},
	"login.invalid":         {"Identifiant, mot de passe ou code incorrect.", "Wrong username, password or code."},
	"login.throttled":       {"Trop d'essais. Réessayez dans", "Too many attempts. Try again in"},
	"login.pending-expired": {"La connexion a expiré : saisissez à nouveau votre mot de passe.", "The sign-in has expired: enter your password again."},
	"login.expired":         {"Votre session a expiré. Reconnectez-vous.", "Your session has expired. Sign in again."},
	"login.logged-out":      {"Vous êtes déconnecté.", "You are signed out."},

	"enrol.title":      {"Configurer la double authentification", "Set up two-factor authentication"},
	"enrol.why":        {"Votre compte donne accès à des dossiers de patients : un mot de passe seul ne suffit pas.", "Your account opens patient records: a password alone is not enough."},
	"enrol.step1":      {"Scannez ce QR code avec une application d'authentification (FreeOTP, Google Authenticator, Microsoft Authenticator…).", "Scan this QR code with an authenticator app (FreeOTP, Google Authenticator, Microsoft Authenticator…)."},
	"enrol.step2":      {"Saisissez le code à 6 chiffres qu'elle affiche.", "Type the 6-digit code it shows."},
	"enrol.qr-alt":     {"QR code de configuration de l'application d'authentification", "QR code to set up the authenticator app"},
	"enrol.secret":     {"Ou saisissez cette clé à la main :", "Or type this key by hand:"},
	"enrol.code":       {"Code affiché", "Code shown"},
	"enrol.confirm":    {"Activer", "Activate"},
	"enrol.wrong-code": {"Ce code ne correspond pas : vérifiez l'heure de votre téléphone et saisissez le code affiché maintenant.", "This code does not match: check your phone's clock and type the code it shows now."},

	"recovery.title": {"Vos codes de secours", "Your recovery codes"},
	"recovery.help":  {"Chaque code permet une connexion si vous perdez votre téléphone. Notez-les et gardez-les en lieu sûr : ils ne seront plus affichés.", "Each code signs you in once if you lose your phone. Write them down and keep them safe: they will not be shown again."},
	"recovery.done":  {"Je les ai notés", "I have written them down"},

	"stepup.title": {"Confirmez votre identité", "Confirm it is you"},
	"stepup.why":   {"Vous consultez beaucoup de nouveaux dossiers : saisissez un nouveau code de votre application pour continuer. Ce contrôle protège les patients si votre session a été volée.", "You are opening many new records: type a fresh code from your app to go on. This check protects patients if your session was stolen."},
	"stepup.wrong": {"Code incorrect ou déjà utilisé.", "Wrong or already used code."},

	"error.notfound":    {"Cette page n'existe pas.", "This page does not exist."},
	"error.csrf":        {"Requête refusée : elle ne vient pas d'une page de Carnet. Rechargez la page et recommencez.", "Request refused: it did not come from a Carnet page. Reload the page and try again."},
	"error.unavailable": {"Service momentanément indisponible. Réessayez.", "Service temporarily unavailable. Try again."},
	"error.throttled":   {"Trop de requêtes : réessayez dans %s s.", "Too many requests: try again in %s s."},
	"error.suspended":   {"Votre compte a été suspendu par le système de protection. Le responsable sécurité a été prévenu et doit le réactiver.", "Your account has been suspended by the protection system. The security officer has been alerted and must re-enable it."},
	"error.home":        {"Retour à l'accueil", "Back to the home page"},

	"home.title":       {"Accueil", "Home"},
	"home.hello":       {"Bonjour %s", "Hello %s"},
	"home.patients":    {"Rechercher un patient par nom, date de naissance, INS ou IPP.", "Find a patient by name, birth date, INS or IPP."},
	"home.admission":   {"Créer un patient et ouvrir un séjour.", "Create a patient and open a stay."},
	"home.admin":       {"Comptes, rôles, établissements et demandes d'export.", "Accounts, roles, facilities and export requests."},
	"home.security":    {"Alertes, suspensions, bris de glace et journal d'accès.", "Alerts, suspensions, break-the-glass and the access log."},
	"home.no-patients": {"Votre rôle ne donne accès à aucun dossier patient.", "Your role gives access to no patient record."},

	"search.title":       {"Rechercher un patient", "Find a patient"},
	"search.name":        {"Nom ou prénom", "Name"},
	"search.birthdate":   {"Date de naissance", "Birth date"},
	"search.date-format": {"jj/mm/aaaa", "dd/mm/yyyy"},
	"search.go":          {"Rechercher", "Search"},
	"search.scope":       {"Seuls les patients que votre rôle vous permet de voir apparaissent.", "Only the patients your role lets you see are listed."},
	"search.found":       {"%d patient(s)", "%d patient(s)"},
	"search.col-name":    {"Nom", "Name"},
	"search.none":        {"Aucun patient trouvé parmi ceux que vous pouvez voir.", "No patient found among those you may see."},
	"search.more":        {"D'autres patients correspondent : précisez la recherche.", "More patients match: narrow the search."},
	"search.bad-date":    {"Date de naissance illisible : utilisez jj/mm/aaaa.", "Unreadable birth date: use dd/mm/yyyy."},

	"patient.title":           {"Dossier patient", "Patient record"},
	"patient.no-access":       {"Vous n'avez pas de lien de soin avec ce patient.", "You have no care relationship with this patient."},
	"patient.no-access-title": {"Accès non autorisé", "No access"},
	"patient.no-access-help":  {"Ce dossier n'appartient pas à vos patients. En cas d'urgence, vous pouvez demander un accès exceptionnel (bris de glace) : il est limité dans le temps, enregistré et revu par le responsable sécurité.", "This record is not one of your patients. In an emergency you may ask for exceptional access (break-the-glass): it is time-limited, logged and reviewed by the security officer."},
	"btg.open":                {"Accès d'urgence (bris de glace)…", "Emergency access (break-the-glass)…"},

	"banner.label":    {"Identité du patient", "Patient identity"},
	"banner.born":     {"Né(e) le", "Born"},
	"banner.years":    {"ans", "years"},
	"banner.sex":      {"Sexe", "Sex"},
	"banner.no-ins":   {"pas d'INS", "no INS"},
	"banner.gp":       {"Médecin traitant", "Attending physician"},
	"banner.facility": {"Établissement", "Facility"},
	"banner.deceased": {"Décédé(e)", "Deceased"},
	"gender.male":     {"Homme", "Male"},
	"gender.female":   {"Femme", "Female"},
	"gender.other":    {"Autre", "Other"},
	"gender.unknown":  {"Inconnu", "Unknown"},
	"gender.":         {"—", "—"},
	"ins.provisional": {"provisoire", "provisional"},
	"ins.retrieved":   {"récupérée", "retrieved"},
	"ins.validated":   {"validée", "validated"},
	"ins.qualified":   {"qualifiée", "qualified"},
}
