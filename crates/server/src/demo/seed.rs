//! The demo company: a heating and plumbing firm in Lyon ("Dupuis Chauffage"),
//! its staff (two agents, a supervisor, an admin), its customers with their
//! history (past calls, tickets with notes, an overdue callback), and the
//! people who will call during the demo. Every number is in one of the ranges
//! ARCEP keeps for fiction, so no real person is ever shown.

use super::scenario::{Caller, CLAIRE, NADIA, RING_GROUP};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use fiche_matcher::{normalise, NumberKind, NumberPolicy};
use fiche_pbx::{CallId, Direction, Outcome, Source};
use fiche_store::{
    Call, CustomerId, NewCustomer, NewPhone, NewTicket, NewTicketEvent, NewUser, Role, Store,
    TicketKind, TicketStatus, UserId,
};
use rand::Rng;

/// One account of the demo and its password (printed at start).
#[derive(Debug, Clone)]
pub struct Login {
    /// Login name.
    pub login: &'static str,
    /// What the account is, for the printed table.
    pub what: &'static str,
    /// Its password for this run.
    pub password: String,
}

struct Staff {
    login: &'static str,
    name: &'static str,
    role: Role,
    extensions: &'static [&'static str],
    what: &'static str,
}

const STAFF: [Staff; 4] = [
    Staff {
        login: "claire",
        name: "Claire Martin",
        role: Role::Agent,
        extensions: &[CLAIRE],
        what: "agente, poste 201 : la fiche client s’ouvre quand son téléphone sonne",
    },
    Staff {
        login: "nadia",
        name: "Nadia Benali",
        role: Role::Agent,
        extensions: &[NADIA],
        what: "agente, poste 202",
    },
    Staff {
        login: "mathilde",
        name: "Mathilde Girard",
        role: Role::Supervisor,
        extensions: &[],
        what: "superviseure : tableau de bord",
    },
    Staff {
        login: "admin",
        name: "Administrateur",
        role: Role::Admin,
        extensions: &[],
        what: "administrateur : tableau de bord et bouton « Simuler un appel »",
    },
];

/// A customer of the demo company.
struct DemoCustomer {
    name: &'static str,
    company: Option<&'static str>,
    phones: &'static [(&'static str, &'static str)],
    tags: &'static [&'static str],
    notes: Option<&'static str>,
    email: Option<&'static str>,
    address: Option<&'static str>,
}

const CUSTOMERS: [DemoCustomer; 8] = [
    DemoCustomer {
        name: "Sophie Bernard",
        company: Some("Boulangerie Bernard"),
        phones: &[("02 61 91 12 34", "domicile"), ("04 65 71 12 34", "boutique")],
        tags: &["VIP", "Contrat entretien"],
        notes: Some("Contrat d’entretien annuel (chaudière gaz Viessmann, 2019). Préfère être rappelée avant 10 h, après la fournée."),
        email: Some("sophie.bernard@example.fr"),
        address: Some("12 rue de la République, 69002 Lyon"),
    },
    DemoCustomer {
        name: "Karim Haddad",
        company: Some("Garage Haddad"),
        phones: &[("04 65 71 22 10", "bureau")],
        tags: &["Professionnel"],
        notes: Some("Atelier de 400 m² chauffé par aérothermes. Facturation à 30 jours."),
        email: Some("contact@garage-haddad.example.fr"),
        address: Some("5 avenue Jean Jaurès, 69007 Lyon"),
    },
    DemoCustomer {
        name: "Élodie Roux",
        company: None,
        phones: &[("02 61 91 45 67", "domicile")],
        tags: &[],
        notes: Some("Pompe à chaleur installée en mars. Digicode 4521B, 3e étage gauche."),
        email: None,
        address: Some("28 quai Saint-Vincent, 69001 Lyon"),
    },
    DemoCustomer {
        name: "Jean-Marc Petit",
        company: Some("Pharmacie du Centre"),
        phones: &[("04 65 71 56 78", "officine")],
        tags: &["Urgent 24 h", "Professionnel"],
        notes: Some("Chambre froide des vaccins : toute panne de chauffage ou d’eau chaude est urgente."),
        email: None,
        address: Some("1 place Bellecour, 69002 Lyon"),
    },
    DemoCustomer {
        name: "Camille Laurent",
        company: Some("Laurent Architectes"),
        phones: &[("05 36 49 11 22", "agence")],
        tags: &["Prescripteur"],
        notes: Some("Nous envoie des chantiers de rénovation. Devis sous 48 h."),
        email: Some("camille@laurent-archi.example.fr"),
        address: None,
    },
    DemoCustomer {
        name: "Thomas Garnier",
        company: None,
        phones: &[("02 61 91 77 88", "domicile")],
        tags: &[],
        notes: Some("Ballon d’eau chaude qui fuit, devis envoyé le mois dernier."),
        email: None,
        address: Some("7 rue des Tanneurs, 69100 Villeurbanne"),
    },
    DemoCustomer {
        name: "Nathalie Moreau",
        company: Some("Hôtel des Voyageurs"),
        phones: &[("03 53 01 33 44", "réception"), ("02 61 91 33 44", "domicile")],
        tags: &["VIP"],
        notes: Some("32 chambres. Intervention uniquement entre 10 h et 16 h (ménage des chambres)."),
        email: Some("direction@hotel-voyageurs.example.fr"),
        address: Some("3 cours de Verdun, 69002 Lyon"),
    },
    DemoCustomer {
        name: "Lucas Fontaine",
        company: None,
        phones: &[("02 61 91 90 12", "domicile")],
        tags: &[],
        notes: None,
        email: None,
        address: Some("54 montée de la Grande-Côte, 69001 Lyon"),
    },
];

/// The regular caller who keeps calling when nobody can answer (Thomas Garnier).
pub fn regular_caller() -> Caller {
    Caller {
        number: "0261917788".into(),
        display: String::new(),
    }
}

/// Customers who call during the demo (not the regular caller): number, and
/// the display name their operator sends (often none in France).
const CALLING_CUSTOMERS: [(&str, &str); 6] = [
    ("0261911234", "BERNARD SOPHIE"),
    ("0465712210", ""),
    ("0261914567", ""),
    ("0465715678", "PHARMACIE DU CENTRE"),
    ("0536491122", ""),
    ("0353013344", "HOTEL DES VOYAGEURS"),
];

/// People who are not customers yet.
const STRANGERS: [(&str, &str); 4] = [
    ("0261915501", ""),
    ("0465719087", "M. LEFEBVRE"),
    ("0261916642", ""),
    ("0199002345", "SCI LES TILLEULS"),
];

/// A customer who calls, at random.
pub fn calling_customer() -> Caller {
    pick(&CALLING_CUSTOMERS)
}

/// A caller who is not a customer, at random.
pub fn stranger() -> Caller {
    pick(&STRANGERS)
}

fn pick(list: &[(&str, &str)]) -> Caller {
    let (number, display) = list[rand::thread_rng().gen_range(0..list.len())];
    Caller {
        number: number.into(),
        display: display.into(),
    }
}

/// A password easy to type from a terminal: no look-alike characters.
fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

fn e164(raw: &str, policy: &NumberPolicy) -> Option<String> {
    match normalise(raw, policy) {
        NumberKind::E164(number) => Some(number),
        _ => None,
    }
}

/// Whether the database is empty (no account): the demo fills only such a one.
pub async fn is_empty(store: &Store) -> anyhow::Result<bool> {
    Ok(store
        .list_users()
        .await
        .context("listing users")?
        .is_empty())
}

/// Whether the database holds the demo's accounts (a `--database` kept from
/// an earlier demo): the demo then gives them new passwords and goes on.
pub async fn is_demo(store: &Store) -> anyhow::Result<bool> {
    let users = store.list_users().await.context("listing users")?;
    Ok(STAFF
        .iter()
        .all(|staff| users.iter().any(|u| u.login == staff.login)))
}

/// New passwords for the demo's accounts of a kept demo database.
pub async fn reset_passwords(store: &Store) -> anyhow::Result<Vec<Login>> {
    let mut logins = Vec::new();
    for staff in &STAFF {
        let password = password();
        let hash = crate::auth::hasher::hasher()
            .hash(password.clone())
            .await
            .context("hashing a demo password")?;
        let user = store
            .get_user_by_login(staff.login)
            .await?
            .with_context(|| format!("user {} disappeared", staff.login))?;
        store.set_password(user.id, &hash).await?;
        logins.push(Login {
            login: staff.login,
            what: staff.what,
            password,
        });
    }
    Ok(logins)
}

/// Fills an empty database with the demo company; the accounts and their passwords.
pub async fn fill(store: &Store, policy: &NumberPolicy) -> anyhow::Result<Vec<Login>> {
    let mut logins = Vec::new();
    let mut ids = Vec::new();
    for staff in &STAFF {
        let password = password();
        let hash = crate::auth::hasher::hasher()
            .hash(password.clone())
            .await
            .context("hashing a demo password")?;
        let user = store
            .add_user(&NewUser {
                login: staff.login.into(),
                display_name: staff.name.into(),
                role: staff.role,
                password: Some(hash),
            })
            .await
            .with_context(|| format!("creating user {}", staff.login))?;
        if !staff.extensions.is_empty() {
            let extensions: Vec<String> = staff.extensions.iter().map(|e| (*e).into()).collect();
            store.set_extensions(user.id, &extensions).await?;
        }
        ids.push(user.id);
        logins.push(Login {
            login: staff.login,
            what: staff.what,
            password,
        });
    }
    let (claire, nadia) = (ids[0], ids[1]);

    let mut customers = Vec::new();
    for c in &CUSTOMERS {
        let phones = c
            .phones
            .iter()
            .map(|(raw, label)| NewPhone {
                e164: e164(raw, policy),
                raw: (*raw).into(),
                label: Some((*label).into()),
            })
            .collect();
        let customer = store
            .create_customer(&NewCustomer {
                name: c.name.into(),
                company: c.company.map(Into::into),
                email: c.email.map(Into::into),
                address: c.address.map(Into::into),
                notes: c.notes.map(Into::into),
                tags: c.tags.iter().map(|t| (*t).into()).collect(),
                external_ref: None,
                phones,
            })
            .await
            .with_context(|| format!("creating customer {}", c.name))?;
        customers.push(customer);
    }
    let now = Utc::now();
    let history = History { store, policy, now };
    let agent_of = |ext: &str| if ext == NADIA { nadia } else { claire };
    for past in &HISTORY {
        let customer = customers[past.customer].id;
        let call = history
            .call(
                customer,
                past.number,
                past.days,
                past.hour,
                past.agent,
                past.minutes,
            )
            .await?;
        match (&past.ticket, past.agent) {
            (Some(ticket), Some(agent)) => {
                let agent = agent_of(agent);
                let notes: Vec<(UserId, &str)> = ticket.notes.iter().map(|n| (agent, *n)).collect();
                history
                    .ticket(call, customer, past.number, ticket, Some(agent), &notes)
                    .await?;
            }
            // Missed on the ring group: a callback for nobody in particular.
            (Some(ticket), None) => {
                history
                    .callback(call, customer, past.number, ticket.subject)
                    .await?;
            }
            (None, _) => {}
        }
    }
    Ok(logins)
}

/// One call of the demo company's past, and the ticket it left.
struct Past {
    /// Index in [`CUSTOMERS`].
    customer: usize,
    number: &'static str,
    days: i64,
    hour: u32,
    /// Who answered; `None`: missed on the ring group (its ticket is a callback).
    agent: Option<&'static str>,
    minutes: i64,
    ticket: Option<PastTicket>,
}

/// A past call's ticket: its notes are by the agent who answered, its owner.
struct PastTicket {
    subject: &'static str,
    reason: Option<&'static str>,
    status: TicketStatus,
    notes: &'static [&'static str],
}

/// The demo company's past calls, oldest customers first.
const HISTORY: [Past; 8] = [
    // Sophie Bernard: a yearly service done, a quote under way.
    Past {
        customer: 0,
        number: "0261911234",
        days: 21,
        hour: 9,
        agent: Some(CLAIRE),
        minutes: 6,
        ticket: Some(PastTicket {
            subject: "Entretien annuel de la chaudière",
            reason: Some("Dépannage / SAV"),
            status: TicketStatus::Closed,
            notes: &["Rendez-vous fixé le 14 à 8 h 30. Technicien : Julien."],
        }),
    },
    Past {
        customer: 0,
        number: "0465711234",
        days: 3,
        hour: 8,
        agent: Some(CLAIRE),
        minutes: 4,
        ticket: Some(PastTicket {
            subject: "Devis remplacement du ballon d’eau chaude",
            reason: Some("Commande"),
            status: TicketStatus::Open,
            notes: &[
                "Souhaite un ballon de 200 L, pose avant les vacances scolaires.",
                "Devis envoyé par courriel, relancer vendredi.",
            ],
        }),
    },
    // Karim Haddad: a billing question, answered by Nadia.
    Past {
        customer: 1,
        number: "0465712210",
        days: 9,
        hour: 14,
        agent: Some(NADIA),
        minutes: 3,
        ticket: Some(PastTicket {
            subject: "Facture n° 2026-0412 : question sur la TVA",
            reason: Some("Facturation"),
            status: TicketStatus::Closed,
            notes: &["TVA à 10 % pour la rénovation confirmée, avoir envoyé."],
        }),
    },
    // Élodie Roux: a complaint, open, on Nadia.
    Past {
        customer: 2,
        number: "0261914567",
        days: 1,
        hour: 17,
        agent: Some(NADIA),
        minutes: 8,
        ticket: Some(PastTicket {
            subject: "Pompe à chaleur bruyante la nuit",
            reason: Some("Réclamation"),
            status: TicketStatus::Open,
            notes: &["Bruit depuis le dégivrage. Passage du technicien à planifier."],
        }),
    },
    // Jean-Marc Petit: an urgent repair last week.
    Past {
        customer: 3,
        number: "0465715678",
        days: 6,
        hour: 7,
        agent: Some(CLAIRE),
        minutes: 2,
        ticket: Some(PastTicket {
            subject: "Plus d’eau chaude à l’officine",
            reason: Some("Dépannage / SAV"),
            status: TicketStatus::Closed,
            notes: &["Urgence : technicien sur place à 9 h, résistance changée."],
        }),
    },
    Past {
        customer: 4,
        number: "0536491122",
        days: 12,
        hour: 11,
        agent: Some(NADIA),
        minutes: 12,
        ticket: None,
    },
    Past {
        customer: 5,
        number: "0261917788",
        days: 30,
        hour: 18,
        agent: Some(CLAIRE),
        minutes: 5,
        ticket: None,
    },
    // Nathalie Moreau: a call missed on the ring group yesterday, its
    // callback overdue (the board's "À rappeler").
    Past {
        customer: 6,
        number: "0353013344",
        days: 1,
        hour: 12,
        agent: None,
        minutes: 0,
        ticket: Some(PastTicket {
            subject: "À rappeler : Nathalie Moreau",
            reason: None,
            status: TicketStatus::Open,
            notes: &[],
        }),
    },
];

/// A call of the history: its id and when it ended (its ticket's date).
#[derive(Debug, Clone, Copy)]
struct PastCall {
    id: CallId,
    ended_at: DateTime<Utc>,
}

/// Writes the history of the demo company, dated in the past.
struct History<'a> {
    store: &'a Store,
    policy: &'a NumberPolicy,
    now: DateTime<Utc>,
}

impl History<'_> {
    /// A past inbound call from `number`, `days` ago at `hour` (today's
    /// time of day when that is in the future), answered at `agent` for
    /// `minutes`, or missed on the ring group when `agent` is `None`.
    async fn call(
        &self,
        customer: CustomerId,
        number: &str,
        days: i64,
        hour: u32,
        agent: Option<&str>,
        minutes: i64,
    ) -> anyhow::Result<PastCall> {
        let day = (self.now - Duration::days(days)).date_naive();
        let started = day
            .and_hms_opt(hour, 12, 0)
            .map(|t| t.and_utc())
            .filter(|t| *t < self.now)
            .unwrap_or(self.now - Duration::days(days) - Duration::hours(1));
        let key = format!("demo-history-{}-{days}-{hour}", customer.0);
        let id = CallId::from_source_key(Source::Hep, &key);
        let answered_at = agent.map(|_| started + Duration::seconds(9));
        let ended_at = match answered_at {
            Some(at) => at + Duration::minutes(minutes) + Duration::seconds(37),
            None => started + Duration::seconds(25),
        };
        let (callee, rang) = match agent {
            Some(ext) => (ext.to_owned(), vec![ext.to_owned()]),
            None => (
                RING_GROUP.to_owned(),
                vec![CLAIRE.to_owned(), NADIA.to_owned()],
            ),
        };
        self.store
            .upsert_call(&Call {
                id,
                source: Source::Hep,
                source_key: key,
                direction: Direction::Inbound,
                caller_number: Some(number.into()),
                caller_name: None,
                caller_withheld: false,
                callee_number: Some(callee),
                remote_e164: e164(number, self.policy),
                agent_extension: agent.map(Into::into),
                rang,
                answered_by: agent.map(Into::into),
                transfers: Vec::new(),
                queue: agent.is_none().then(|| RING_GROUP.to_owned()),
                customer_id: Some(customer),
                started_at: started,
                answered_at,
                ended_at: Some(ended_at),
                outcome: Some(if agent.is_some() {
                    Outcome::Answered
                } else {
                    Outcome::Missed
                }),
                cause: Some(
                    if agent.is_some() {
                        "caller hung up"
                    } else {
                        "caller hung up (CANCEL)"
                    }
                    .into(),
                ),
            })
            .await
            .context("writing a past call")?;
        Ok(PastCall { id, ended_at })
    }

    /// A call's ticket with its notes.
    #[allow(clippy::too_many_arguments)] // Reason: one line of the demo's history per call.
    async fn ticket(
        &self,
        call: PastCall,
        customer: CustomerId,
        number: &str,
        ticket: &PastTicket,
        assignee: Option<UserId>,
        notes: &[(UserId, &str)],
    ) -> anyhow::Result<()> {
        let PastTicket {
            subject,
            reason,
            status,
            ..
        } = *ticket;
        let ticket = self
            .store
            .insert_ticket(&NewTicket {
                call_id: Some(call.id),
                customer_id: Some(customer),
                phone_e164: e164(number, self.policy),
                kind: TicketKind::Call,
                status,
                subject: subject.into(),
                reason: reason.map(Into::into),
                priority: 0,
                assignee_user_id: assignee,
                assignee_group: None,
                queue: None,
                due_at: None,
            })
            .await
            .context("writing a past ticket")?;
        for (author, text) in notes {
            self.store
                .add_ticket_event(&NewTicketEvent {
                    ticket_id: ticket.id,
                    author_user_id: Some(*author),
                    kind: "note".into(),
                    call_id: None,
                    body: serde_json::json!({ "text": text }),
                })
                .await
                .context("writing a past note")?;
        }
        self.store
            .backdate_ticket(ticket.id, call.ended_at)
            .await
            .context("dating a past ticket")?;
        Ok(())
    }

    /// An open callback for a missed call, due an hour after it (overdue now).
    async fn callback(
        &self,
        call: PastCall,
        customer: CustomerId,
        number: &str,
        subject: &str,
    ) -> anyhow::Result<()> {
        let ticket = self
            .store
            .insert_ticket(&NewTicket {
                call_id: Some(call.id),
                customer_id: Some(customer),
                phone_e164: e164(number, self.policy),
                kind: TicketKind::Callback,
                status: TicketStatus::Open,
                subject: subject.into(),
                reason: None,
                priority: 0,
                assignee_user_id: None,
                assignee_group: Some(RING_GROUP.into()),
                queue: None,
                due_at: Some(call.ended_at + Duration::hours(1)),
            })
            .await
            .context("writing a past callback")?;
        self.store
            .backdate_ticket(ticket.id, call.ended_at)
            .await
            .context("dating a past callback")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_number_is_a_valid_french_number() {
        let policy = NumberPolicy::default();
        let numbers = CUSTOMERS
            .iter()
            .flat_map(|c| c.phones.iter().map(|(raw, _)| *raw))
            .chain(CALLING_CUSTOMERS.iter().map(|(n, _)| *n))
            .chain(STRANGERS.iter().map(|(n, _)| *n))
            .chain(["0261917788"]);
        for number in numbers {
            let e164 = e164(number, &policy).unwrap_or_else(|| panic!("{number} is not valid"));
            assert!(e164.starts_with("+33"), "{number} → {e164}");
        }
    }

    #[test]
    fn callers_are_customers_or_strangers_as_announced() {
        let policy = NumberPolicy::default();
        let customer_numbers: Vec<String> = CUSTOMERS
            .iter()
            .flat_map(|c| c.phones.iter().filter_map(|(raw, _)| e164(raw, &policy)))
            .collect();
        for (number, _) in CALLING_CUSTOMERS.iter().chain([&("0261917788", "")]) {
            let e = e164(number, &policy).unwrap_or_default();
            assert!(customer_numbers.contains(&e), "{number} is no customer's");
        }
        for (number, _) in STRANGERS {
            let e = e164(number, &policy).unwrap_or_default();
            assert!(!customer_numbers.contains(&e), "{number} is a customer's");
        }
    }
}
