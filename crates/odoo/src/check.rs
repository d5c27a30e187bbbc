//! `fiche odoo check`: what Fiche can and cannot do with this Odoo, in words a
//! sysadmin can act on (French, as the rest of the product's text).

use serde_json::{Map, Value};

use crate::client::{self, OdooClient};
use crate::config::OdooConfig;
use crate::error::OdooError;
use crate::wire::{Protocol, ServerVersion};

/// Which help desk the database runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helpdesk {
    /// Odoo Enterprise's Helpdesk app (`helpdesk.ticket` with `partner_phone`, teams).
    Enterprise,
    /// The Community module OCA `helpdesk_mgmt` (`number`, `channel_id`, required `description`).
    Oca,
}

/// Tells the two help desks apart from `helpdesk.ticket`'s fields.
pub fn helpdesk_flavour(fields: &Map<String, Value>) -> Helpdesk {
    if fields.contains_key("channel_id") && fields.contains_key("number") {
        Helpdesk::Oca
    } else {
        Helpdesk::Enterprise
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether this part works.
    pub ok: bool,
    /// Whether Fiche cannot work without it (a failed needed finding fails the check).
    pub needed: bool,
    /// What was found, and what to do when it is wrong.
    pub text: String,
}

/// The whole report.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The server's version, when it answered.
    pub version: Option<ServerVersion>,
    /// The API used.
    pub protocol: Option<Protocol>,
    /// The help desk found.
    pub helpdesk: Option<Helpdesk>,
    /// The lines, in order.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    fn say(&mut self, ok: bool, needed: bool, text: impl Into<String>) {
        self.findings.push(Finding {
            ok,
            needed,
            text: text.into(),
        });
    }

    /// True when nothing needed is missing.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok || !f.needed)
    }

    /// The report as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            let mark = match (finding.ok, finding.needed) {
                (true, _) => "OK  ",
                (false, true) => "ERR ",
                (false, false) => "WARN",
            };
            out.push_str(&format!("[{mark}] {}\n", finding.text));
        }
        out.push_str(if self.ok() {
            "Odoo est prêt pour Fiche.\n"
        } else {
            "Odoo n'est pas prêt pour Fiche : corrigez les lignes [ERR] ci-dessus.\n"
        });
        out
    }
}

/// A model Fiche uses: the fields it reads or writes, and the rights it needs.
struct ModelNeed {
    model: &'static str,
    purpose: &'static str,
    needed: bool,
    fields: &'static [&'static str],
    optional_fields: &'static [&'static str],
    operations: &'static [&'static str],
}

const NEEDS: &[ModelNeed] = &[
    ModelNeed {
        model: "res.partner",
        purpose: "les clients (contacts)",
        needed: true,
        fields: &[
            "name",
            "phone",
            "email",
            "street",
            "zip",
            "city",
            "comment",
            "category_id",
            "commercial_partner_id",
            "active",
            "write_date",
        ],
        optional_fields: &["mobile"],
        operations: &["read"],
    },
    ModelNeed {
        model: "res.partner.category",
        purpose: "les étiquettes des contacts",
        needed: false,
        fields: &["name"],
        optional_fields: &[],
        operations: &["read"],
    },
    ModelNeed {
        model: "res.users",
        purpose: "les agents (par identifiant ou e-mail)",
        needed: false,
        fields: &["login", "email"],
        optional_fields: &[],
        operations: &["read"],
    },
    ModelNeed {
        model: "helpdesk.ticket",
        purpose: "les tickets d'assistance",
        needed: false,
        fields: &["name", "partner_id", "description", "user_id", "priority"],
        optional_fields: &["partner_phone", "channel_id", "team_id", "stage_id"],
        operations: &["read", "create", "write"],
    },
    ModelNeed {
        model: "mail.activity",
        purpose: "les rappels (activités « Appel »)",
        needed: false,
        fields: &[
            "res_model_id",
            "res_id",
            "activity_type_id",
            "user_id",
            "date_deadline",
            "summary",
        ],
        optional_fields: &[],
        operations: &["read", "create", "write"],
    },
    ModelNeed {
        model: "mail.activity.type",
        purpose: "le type d'activité « Appel »",
        needed: false,
        fields: &["name", "category"],
        optional_fields: &[],
        operations: &["read"],
    },
];

/// Connects, then inspects every model Fiche uses. Never fails: what goes
/// wrong is a finding.
pub async fn check(config: &OdooConfig) -> CheckReport {
    let mut report = CheckReport::default();
    let version = match client::server_version(config).await {
        Ok(version) => version,
        Err(error) => {
            report.say(
                false,
                true,
                format!(
                    "Odoo ne répond pas à {}/jsonrpc ({error}). Vérifiez odoo.url (l'adresse de \
                     base, sans /jsonrpc ni /odoo), le pare-feu et le proxy.",
                    config.url.trim_end_matches('/')
                ),
            );
            return report;
        }
    };
    report.say(
        true,
        true,
        format!(
            "Odoo {} ({}) à {}",
            version.text,
            if version.enterprise {
                "Enterprise"
            } else {
                "Community"
            },
            config.url
        ),
    );
    if version.major < 16 {
        report.say(
            false,
            true,
            format!(
                "Odoo {} n'est pas pris en charge : Fiche parle à Odoo 16 et suivants.",
                version.text
            ),
        );
    }
    report.version = Some(version);
    let client = match OdooClient::connect(config).await {
        Ok(client) => client,
        Err(OdooError::AccessDenied { .. }) => {
            report.say(
                false,
                true,
                format!(
                    "Connexion refusée pour l'utilisateur « {} » sur la base « {} » : la clé API \
                     est fausse, expirée (Odoo limite leur durée à 3 mois) ou appartient à un autre \
                     utilisateur. Dans Odoo, connecté en « {} » : Préférences → Sécurité du compte → \
                     Nouvelle clé API ; mettez-la dans FICHE_ODOO_API_KEY (ou odoo.api_key).",
                    config.login, config.database, config.login
                ),
            );
            return report;
        }
        Err(error) => {
            report.say(false, true, format!("Connexion impossible : {error}"));
            return report;
        }
    };
    report.protocol = Some(client.protocol());
    report.say(
        true,
        true,
        format!(
            "Connecté en « {} » (utilisateur n° {}) par {}",
            config.login,
            client.uid(),
            client.protocol()
        ),
    );
    if client.version().major >= 19 && client.protocol() == Protocol::JsonRpc {
        report.say(
            false,
            false,
            "JSON-RPC est obsolète depuis Odoo 19 (retiré en 22) : laissez odoo.api = \"auto\".",
        );
    }
    for need in NEEDS {
        inspect(&client, need, &mut report).await;
    }
    report
}

async fn inspect(client: &OdooClient, need: &ModelNeed, report: &mut CheckReport) {
    let fields = match client.fields(need.model).await {
        Ok(fields) => fields,
        Err(OdooError::NotFound { .. }) => {
            let hint = if need.model == "helpdesk.ticket" {
                " Installez l'application Assistance (Enterprise) ou le module OCA helpdesk_mgmt ; \
                 sans eux, Fiche garde ses tickets pour lui."
            } else {
                ""
            };
            report.say(
                false,
                need.needed,
                format!("Modèle {} absent ({}).{hint}", need.model, need.purpose),
            );
            return;
        }
        Err(OdooError::AccessError { .. }) => {
            report.say(
                false,
                need.needed,
                format!(
                    "Lecture de {} refusée ({}) : donnez à l'utilisateur de Fiche le droit de lecture \
                     sur ce modèle (Paramètres → Utilisateurs → Droits d'accès).",
                    need.model, need.purpose
                ),
            );
            return;
        }
        Err(error) => {
            report.say(false, need.needed, format!("{} : {error}", need.model));
            return;
        }
    };
    let missing: Vec<&str> = need
        .fields
        .iter()
        .copied()
        .filter(|f| !fields.contains_key(*f))
        .collect();
    let found: Vec<&str> = need
        .fields
        .iter()
        .chain(need.optional_fields)
        .copied()
        .filter(|f| fields.contains_key(*f))
        .collect();
    let mut text = format!(
        "{} ({}) : champs {}",
        need.model,
        need.purpose,
        found.join(", ")
    );
    if need.model == "helpdesk.ticket" {
        let flavour = helpdesk_flavour(&fields);
        report.helpdesk = Some(flavour);
        text.push_str(match flavour {
            Helpdesk::Enterprise => " — Assistance Odoo Enterprise",
            Helpdesk::Oca => " — module OCA helpdesk_mgmt",
        });
    }
    let absent_optional: Vec<&str> = need
        .optional_fields
        .iter()
        .copied()
        .filter(|f| !fields.contains_key(*f))
        .collect();
    if need.model == "res.partner" && absent_optional.contains(&"mobile") {
        text.push_str(" (pas de champ mobile sur cette version : seul phone est importé)");
    }
    report.say(missing.is_empty(), need.needed, text);
    if !missing.is_empty() {
        report.say(
            false,
            need.needed,
            format!(
                "{} : champs manquants {} (module pas à jour, ou champ retiré sur cette version).",
                need.model,
                missing.join(", ")
            ),
        );
    }
    let mut refused = Vec::new();
    for operation in need.operations {
        match client.may(need.model, operation).await {
            Ok(true) => {}
            Ok(false) => refused.push(*operation),
            Err(error) => {
                report.say(
                    false,
                    false,
                    format!("{} : droits non vérifiés ({error})", need.model),
                );
                return;
            }
        }
    }
    if !refused.is_empty() {
        let words: Vec<&str> = refused
            .iter()
            .map(|op| match *op {
                "read" => "lire",
                "create" => "créer",
                "write" => "modifier",
                _ => "supprimer",
            })
            .collect();
        report.say(
            false,
            need.needed,
            format!(
                "{} : l'utilisateur de Fiche ne peut pas {} ({}). Ajoutez-le au groupe qui le \
                 permet (par ex. « Assistance / Utilisateur » pour les tickets).",
                need.model,
                words.join(" ni "),
                need.purpose
            ),
        );
    }
}
