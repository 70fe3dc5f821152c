// Strings, labels and limits of the booking component (German, as on the city's site).

export const DEFAULT_API_BASE = "/buergeransicht/api/citizen";
export const TZ = "Europe/Berlin";
export const DAY_PART_THRESHOLD = 18; // more slots than this on a day: group by hour instead of am/pm
export const CALENDAR_MONTHS = 6;

// Page variants a scenario can switch to, so that a watcher keyed on the spec's DOM sees a change.
export const LAYOUT = {
  renamedTimeslotIds: new Set(["renamed-timeslot-ids", "renamed-ids"]),
  renamedButtons: "renamed-buttons",
  noShadowDom: "no-shadow-dom",
  // the calendar's day tiles lose role=button and their class (a fault: the booker finds no tile)
  renamedDayTiles: "renamed-day-tiles",
};
export const RENAMED_BUTTONS = {
  next: "Fortfahren",
  back: "Vorheriger Schritt",
  changeService: "Andere Leistung wählen",
  bookAppointment: "Reservierung abschicken",
};

export const QUICK_LINKS = [
  ["Wohnsitz-Anmeldung", 1063475],
  ["Reisepass", 1063453],
  ["Personalausweis", 1063441],
  ["Ausweis-Abholung", 10295182],
  ["Führerschein-Abholung", 10176294],
  ["eID-PIN", 10225119],
  ["Kfz-Ummeldung", 1064314],
  ["Kfz-Abmeldung", 1064305],
];

export const T = {
  steps: ["Leistung", "Termin", "Kontakt", "Übersicht"],
  next: "Weiter",
  back: "Zurück",
  changeService: "Leistung wechseln",
  serviceSearch: "Bürgerservice-Suche",
  servicePlaceholder: "Leistung auswählen",
  noServiceFound: "Keine Leistung gefunden",
  oftenSearched: "Häufig gesuchte Leistungen:",
  estimatedDuration: "Voraussichtliche Termindauer:",
  minutes: "Minuten",
  location: "Ort",
  dateAndTime: "Datum und Uhrzeit",
  calendarView: "Kalenderansicht",
  listView: "Listenansicht",
  prevMonth: "Vorheriger Monat",
  nextMonth: "Nächster Monat",
  availableTimes: "Verfügbare Termine",
  am: "Vormittag",
  pm: "Nachmittag",
  earlier: "Früher",
  later: "Später",
  timeStampSuffix: "Uhr",
  listViewActive: "Listenansicht aktiv.",
  calendarViewActive: "Kalenderansicht aktiv.",
  switchToCalendarView: "Zur Kalenderansicht wechseln",
  switchToListView: "Zur Listenansicht wechseln",
  clock: "Uhr",
  loadingTimes: "Verfügbare Termine werden geladen",
  selectedAppointment: "Ausgewählter Termin",
  newAppointmentsInfo: "Wann gibt es neue Termine?",
  providerSelectionError: "Bitte wählen Sie mindestens einen Ort aus, um passende Termine zu sehen.",
  contactDetails: "Kontaktdaten",
  firstName: "Vorname",
  lastName: "Nachname",
  mailAddress: "E-Mail-Adresse",
  telephone: "Telefonnummer",
  remarks: "Bemerkungen",
  remarks2: "Weitere Bemerkungen",
  errFirstName: "Bitte geben Sie Ihren Vornamen an.",
  errLastName: "Bitte geben Sie Ihren Nachnamen an.",
  errMailRequired: "Bitte geben Sie Ihre E-Mail-Adresse an.",
  errMailFormat:
    "Ihre E-Mail-Adresse entspricht nicht dem vorgegebenen Format. Bitte prüfen Sie nochmal, ob Sie sie richtig geschrieben haben.",
  errPhoneRequired: "Bitte geben Sie Ihre Telefonnummer an.",
  errPhoneFormat:
    "Ihre Telefonnummer entspricht nicht dem vorgegebenen Format. Bitte geben Sie nur ein +-Zeichen und Zahlen ein.",
  errCustom: "Bitte geben Sie die notwendigen Informationen ein.",
  errMaxLength: (max) => `Ihre Eingabe in diesem Feld darf ${max} Zeichen nicht überschreiten.`,
  overview: "Übersicht",
  service: "Leistung",
  appointment: "Termin",
  contact: "Kontakt",
  legalNotes: "Rechtliche Hinweise",
  privacyText:
    "Ihre Daten werden ausschließlich zur Durchführung Ihres Termins gespeichert und verarbeitet.",
  communicationLabel:
    "Ich habe die Hinweise zur elektronischen Kommunikation zur Kenntnis genommen und stimme zu, über E-Mail zu meinem Termin benachrichtigt zu werden.",
  bookAppointment: "Termin reservieren",
  activateHeader: "Aktivieren Sie Ihren Termin.",
  activateText: (minutes) =>
    "Sie erhalten in den nächsten Minuten eine E-Mail mit einem Link für die Aktivierung. Klicken Sie auf den Link, um die Buchung abzuschließen. " +
    `Wenn Sie den Termin nicht innerhalb von ${minutes} Minuten aktivieren, verfällt Ihre Reservierung.`,
  bookedHeader: "Ihr Termin wurde gebucht.",
  bookedText:
    "Eine Bestätigung und weitere Informationen zu Ihrem Termin erhalten Sie per E-Mail. Wir freuen uns auf Ihren Besuch.",
  downloadIcs: "Termin herunterladen (ics)",
  bookAnother: "Weiteren Termin vereinbaren",
  alreadyActivated: "Sie haben Ihren Termin bereits aktiviert.",
  reschedule: "Termin verschieben",
  cancelAppointment: "Termin absagen",
  cancelModalHeading: "Absage Ihres Termins",
  cancelModalText:
    "Ihnen ist etwas dazwischengekommen? Klicken Sie auf „Absagen“, um Ihren Termin aus dem System zu löschen.",
  cancelConfirm: "Absagen",
  cancelAbort: "Abbrechen",
  canceledHeader: "Sie haben Ihren Termin erfolgreich abgesagt.",
  canceledText: "Danke, dass Sie Ihren Termin für andere freigegeben haben.",
  appointmentNumber: "Terminnummer",
  loading: "Wird geladen …",
  captchaLoadError: "Das Widget konnte nicht geladen werden.",
};

// errorCode -> [header, text]; codes not listed fall back to GENERIC_ERROR.
export const ERRORS = {
  appointmentNotAvailable: [
    "Ihr gewählter Termin ist nicht mehr verfügbar.",
    "Leider hat inzwischen eine andere Person Ihren gewünschten Termin gebucht. Bitte wählen Sie einen neuen Termin aus.",
  ],
  noAppointmentForThisScope: [
    "Aktuell ist kein Termin verfügbar.",
    "Bitte versuchen Sie es noch einmal zu einem späteren Zeitpunkt.",
  ],
  noAppointmentForThisDay: [
    "Aktuell ist kein Termin verfügbar.",
    "Bitte versuchen Sie es noch einmal zu einem späteren Zeitpunkt.",
  ],
  sessionTimeout: [
    "Ihre Sitzung ist abgelaufen.",
    "Seit dem Start Ihrer Terminbuchung ist zu viel Zeit vergangen. Bitte wählen Sie einen neuen Termin, um mit der Buchung fortzufahren.",
  ],
  captchaSession: [
    "Ihre Sitzung ist abgelaufen.",
    "Bitte gehen Sie zurück und bestätigen Sie erneut, dass Sie kein Bot sind.",
  ],
  invalidJumpinLink: [
    "Diese Ansicht kann nicht geladen werden.",
    "Der Link zu dieser Seite ist leider fehlerhaft. Starten Sie die Terminvereinbarung neu, um eine Leistung zu wählen.",
  ],
  appointmentNotFound: [
    "Wir konnten Ihren Termin nicht finden.",
    "Vielleicht haben Sie Ihren Termin bereits abgesagt? Andernfalls überprüfen Sie bitte, ob Sie den richtigen Link verwendet haben.",
  ],
  authKeyMismatch: [
    "Ungültiger Authentifizierungsschlüssel",
    "Leider kann Ihr Termin nicht aktiviert werden. Bitte überprüfen Sie, ob Sie den richtigen Link verwendet haben.",
  ],
  preconfirmationExpired: [
    "Ihr Termin kann nicht mehr aktiviert werden.",
    "Leider ist die Zeit für die Aktivierung Ihres Termins abgelaufen. Bitte vereinbaren Sie den Termin erneut.",
  ],
  processNotPreconfirmedAnymore: [
    "Ihr Termin kann nicht mehr aktiviert werden.",
    "Leider ist die Zeit für die Aktivierung Ihres Termins abgelaufen. Bitte vereinbaren Sie den Termin erneut.",
  ],
  processNotReservedAnymore: [
    "Ihr Termin kann nicht mehr reserviert werden.",
    "Leider ist die Zeit für die Reservierung Ihres Termins abgelaufen. Bitte vereinbaren Sie den Termin erneut.",
  ],
  appointmentCanNotBeCanceled: [
    "Ihr Termin kann nicht abgesagt werden.",
    "Leider kann Ihr Termin nicht abgesagt werden. Bitte wenden Sie sich an den Service, der Ihnen den Termin angeboten hat.",
  ],
  invalidLocationAndServiceCombination: [
    "Ungültige Kombination aus Ort und Leistung.",
    "Die angegebene Dienstleistung ist an diesem Standort nicht verfügbar.",
  ],
  invalidEmail: ["Ungültige E-Mail-Adresse", "Bitte geben Sie eine gültige E-Mail-Adresse ein."],
  emailIsRequired: ["E-Mail-Adresse ist erforderlich.", "Bitte geben Sie Ihre E-Mail-Adresse an."],
  invalidTelephone: ["Ungültige Telefonnummer", "Bitte geben Sie eine gültige Telefonnummer ein."],
  telephoneIsRequired: ["Telefonnummer ist erforderlich", "Bitte geben Sie Ihre Telefonnummer an."],
  invalidFamilyName: ["Ungültiger Familienname", "Bitte geben Sie einen gültigen Familiennamen ein."],
  invalidCustomTextfield: [
    "Ungültiges benutzerdefiniertes Textfeld",
    "Bitte geben Sie die notwendigen Informationen ein.",
  ],
  invalidCustomTextfield2: [
    "Ungültiges benutzerdefiniertes Textfeld",
    "Bitte geben Sie die notwendigen Informationen ein.",
  ],
  tooManyAppointmentsWithSameMail: [
    "Sie haben bereits zu viele Termine gebucht.",
    "Sie können mit Ihrer E-Mail-Adresse nur eine begrenzte Anzahl an Terminen vereinbaren. Bitte sagen Sie einen anderen Termin ab, bevor Sie einen neuen Termin buchen.",
  ],
  IP_BLACKLISTED: [
    "IP-Adresse blockiert",
    "Sie haben die maximale Anzahl an Anfragen erreicht. Bitte versuchen Sie es später noch einmal.",
  ],
};
export const GENERIC_ERROR = ["Ein Fehler ist aufgetreten.", "Bitte versuchen Sie es später erneut."];
export const CAPTCHA_ERRORS = new Set(["captchaMissing", "captchaExpired", "captchaInvalid"]);

// Screens that replace the whole component.
export const FATAL = {
  rateLimit: [
    "Zu viele Anfragen",
    "Sie haben die maximale Anzahl an Anfragen erreicht. Bitte versuchen Sie es später noch einmal.",
  ],
  maintenance: [
    "Wir aktualisieren unser System für Sie.",
    "Zur Zeit befindet sich unser System in der Wartung. Bitte versuchen Sie es später noch einmal.",
  ],
  unavailable: [
    "Diese Funktion ist zur Zeit nicht verfügbar.",
    "Es gibt aktuell leider ein technisches Problem mit dieser Funktion. Bitte versuchen Sie es später noch einmal.",
  ],
};

// Same pattern as the citizen API's ValidationService (rejects '+').
export const EMAIL_RE = /^(?!.*\.\.)(?!\.)(?!.*\.$)[^\s@+]+(?<!\.)@(?!\.)[^\s@+]+\.[^\s@]{2,}$/;
export const PHONE_RE = /^\+?[0-9]\d{6,14}$/;
export const NAME_MAX = 50;
export const CUSTOM_MAX = 250;
