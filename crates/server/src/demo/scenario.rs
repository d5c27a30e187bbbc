//! The demo's calls: who calls, where it rings, who answers, and the timed
//! SIP messages that make it happen. Pure: the phone system (`phone.rs`)
//! plays a [`Script`] on the clock; the tests feed it to the real tracker.

use super::sip::{Dialog, SipPacket, PBX, TRUNK};
use std::time::Duration;

/// The ring group of the demo company: 600 rings Claire and Nadia at once.
pub const RING_GROUP: &str = "600";
/// The ring group's phones.
pub const GROUP_PHONES: [&str; 2] = ["201", "202"];
/// Claire's extension.
pub const CLAIRE: &str = "201";
/// Nadia's extension.
pub const NADIA: &str = "202";

/// The calls the simulated phone system places, in the order it places them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A customer calls Claire's direct line; she answers.
    KnownAnswered,
    /// A customer calls the ring group; both phones ring, Nadia answers.
    GroupAnswered,
    /// The regular caller calls Claire, who does not pick up: a callback.
    KnownMissed,
    /// Someone who is not a customer yet calls Nadia; she answers.
    UnknownAnswered,
    /// A withheld number calls the ring group; Claire answers.
    WithheldGroup,
    /// A customer calls Claire, who answers and transfers the call to Nadia.
    Transfer,
    /// The regular caller tries again on the ring group; nobody answers: a
    /// second attempt on the same callback.
    RepeatMissed,
}

impl Scenario {
    /// Every scenario, in the order the phone system cycles through them.
    pub const ROTATION: [Scenario; 7] = [
        Scenario::KnownAnswered,
        Scenario::GroupAnswered,
        Scenario::KnownMissed,
        Scenario::UnknownAnswered,
        Scenario::WithheldGroup,
        Scenario::Transfer,
        Scenario::RepeatMissed,
    ];

    /// Its name in the API (`POST /api/demo/calls`' answer).
    pub fn key(self) -> &'static str {
        match self {
            Scenario::KnownAnswered => "known_answered",
            Scenario::GroupAnswered => "group_answered",
            Scenario::KnownMissed => "known_missed",
            Scenario::UnknownAnswered => "unknown_answered",
            Scenario::WithheldGroup => "withheld_group",
            Scenario::Transfer => "transfer",
            Scenario::RepeatMissed => "repeat_missed",
        }
    }

    /// What happens, for people (French: the demo's audience).
    pub fn title(self) -> &'static str {
        match self {
            Scenario::KnownAnswered => "Un client appelle Claire (201), qui décroche",
            Scenario::GroupAnswered => {
                "Un client appelle le groupe 600 : Claire et Nadia sonnent, Nadia décroche"
            }
            Scenario::KnownMissed => {
                "Un client appelle Claire (201), qui ne décroche pas : à rappeler"
            }
            Scenario::UnknownAnswered => "Un inconnu appelle Nadia (202), qui décroche",
            Scenario::WithheldGroup => "Un numéro masqué appelle le groupe 600 : Claire décroche",
            Scenario::Transfer => "Un client appelle Claire, qui transfère l’appel à Nadia",
            Scenario::RepeatMissed => {
                "Le même client rappelle le groupe 600, personne ne décroche : 2e tentative"
            }
        }
    }

    /// The extensions that ring first: the phone system picks a scenario
    /// ringing an agent who just opened her page, so her first pop comes at once.
    pub fn first_rings(self) -> &'static [&'static str] {
        match self {
            Scenario::KnownAnswered | Scenario::KnownMissed | Scenario::Transfer => &[CLAIRE],
            Scenario::UnknownAnswered => &[NADIA],
            Scenario::GroupAnswered | Scenario::WithheldGroup | Scenario::RepeatMissed => {
                &GROUP_PHONES
            }
        }
    }

    /// Every extension the call occupies.
    pub fn phones(self) -> &'static [&'static str] {
        match self {
            Scenario::KnownAnswered | Scenario::KnownMissed => &[CLAIRE],
            Scenario::UnknownAnswered => &[NADIA],
            _ => &GROUP_PHONES,
        }
    }
}

/// Who calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The number as the operator presents it (French national format).
    pub number: String,
    /// The display name the network sends, often empty in France.
    pub display: String,
}

/// How long things take (chosen at random by the phone system, fixed in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From the first ring to the answer, or to the caller giving up.
    pub ring: Duration,
    /// From the answer to the hang-up (or to the transfer).
    pub talk: Duration,
}

/// One SIP message and when to send it, from the call's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    /// Offset from the call's start.
    pub at: Duration,
    /// The message.
    pub packet: SipPacket,
}

/// A call ready to play.
#[derive(Debug, Clone)]
pub struct Script {
    /// Which scenario.
    pub scenario: Scenario,
    /// The SIP Call-IDs it uses (two for a transfer).
    pub call_ids: Vec<String>,
    /// Messages, sorted by time.
    pub steps: Vec<Timed>,
}

impl Script {
    /// When the last message goes out.
    pub fn duration(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |s| s.at)
    }
}

/// A small gap between messages that happen "at once" (a proxy's relay).
const GAP: Duration = Duration::from_millis(20);
/// Between the INVITE and the first 180.
const TO_RING: Duration = Duration::from_millis(300);

struct Builder {
    steps: Vec<Timed>,
    now: Duration,
}

impl Builder {
    fn new() -> Self {
        Builder {
            steps: Vec::new(),
            now: Duration::ZERO,
        }
    }

    fn push(&mut self, packets: impl IntoIterator<Item = SipPacket>) {
        for packet in packets {
            self.steps.push(Timed {
                at: self.now,
                packet,
            });
            self.now += GAP;
        }
    }

    fn wait(&mut self, pause: Duration) {
        self.now += pause;
    }
}

/// The dialog to `callee`: a withheld caller for [`Scenario::WithheldGroup`].
fn dialog(scenario: Scenario, call_id: &str, caller: &Caller, callee: &str) -> Dialog {
    if scenario == Scenario::WithheldGroup {
        Dialog::withheld(call_id, &caller.number, callee)
    } else {
        Dialog::inbound(call_id, &caller.display, &caller.number, callee)
    }
}

/// The INVITE forked to `phones`, each ringing.
fn ring(b: &mut Builder, d: &Dialog, phones: &[&str]) {
    b.push(d.invite());
    for ext in phones {
        b.push([d.fork(ext)]);
    }
    b.wait(TO_RING);
    for ext in phones {
        b.push(d.relay(ext, 180, "Ringing"));
    }
}

/// `ext` answers among `phones`; the others are cancelled "elsewhere".
fn answer(b: &mut Builder, d: &Dialog, phones: &[&str], ext: &str) {
    b.push(d.relay(ext, 200, "OK"));
    let elsewhere = "SIP;cause=200;text=\"Call completed elsewhere\"";
    for other in phones.iter().filter(|p| **p != ext) {
        b.push([d.cancel_fork(other, Some(elsewhere))]);
        b.push([d.phone_reply(other, 487, "Request Terminated")]);
    }
    b.push(d.caller_request("ACK", 1, ext, ""));
}

/// The caller gives up while `phones` ring.
fn give_up(b: &mut Builder, d: &Dialog, phones: &[&str]) {
    b.push(d.cancel());
    for ext in phones {
        b.push([d.cancel_fork(ext, None)]);
        b.push([d.phone_reply(ext, 487, "Request Terminated")]);
    }
    b.push([d.to_caller(487, "Request Terminated", None)]);
}

/// Someone hangs up a call `ext` answered: the caller when `caller_hangs_up`.
fn hang_up(b: &mut Builder, d: &Dialog, ext: &str, caller_hangs_up: bool) {
    if caller_hangs_up {
        b.push(d.caller_request("BYE", 2, ext, ""));
        b.push([d.ok_to("BYE", 2, ext, super::sip::phone(ext))]);
    } else {
        b.push(d.callee_request("BYE", 1, ext, ""));
        b.push([d.ok_to("BYE", 1, ext, TRUNK)]);
    }
}

/// The script of one call. `nonce` makes its Call-IDs unique (a run's id and
/// a counter), `caller` is who calls, `timing` how long it rings and talks.
pub fn script(scenario: Scenario, nonce: &str, caller: &Caller, timing: Timing) -> Script {
    let call_id = format!("demo-{nonce}@{}", PBX.ip());
    let mut b = Builder::new();
    let mut call_ids = vec![call_id.clone()];
    // Who hangs up alternates with the nonce, for variety in the log.
    let caller_hangs_up = nonce.bytes().last().is_some_and(|c| c % 2 == 0);
    match scenario {
        Scenario::KnownAnswered | Scenario::UnknownAnswered => {
            let ext = scenario.phones()[0];
            let d = dialog(scenario, &call_id, caller, ext);
            ring(&mut b, &d, &[ext]);
            b.wait(timing.ring);
            answer(&mut b, &d, &[ext], ext);
            b.wait(timing.talk);
            hang_up(&mut b, &d, ext, caller_hangs_up);
        }
        Scenario::GroupAnswered | Scenario::WithheldGroup => {
            let who = if scenario == Scenario::GroupAnswered {
                NADIA
            } else {
                CLAIRE
            };
            let d = dialog(scenario, &call_id, caller, RING_GROUP);
            ring(&mut b, &d, &GROUP_PHONES);
            b.wait(timing.ring);
            answer(&mut b, &d, &GROUP_PHONES, who);
            b.wait(timing.talk);
            hang_up(&mut b, &d, who, caller_hangs_up);
        }
        Scenario::KnownMissed => {
            let d = dialog(scenario, &call_id, caller, CLAIRE);
            ring(&mut b, &d, &[CLAIRE]);
            b.wait(timing.ring);
            give_up(&mut b, &d, &[CLAIRE]);
        }
        Scenario::RepeatMissed => {
            let d = dialog(scenario, &call_id, caller, RING_GROUP);
            ring(&mut b, &d, &GROUP_PHONES);
            b.wait(timing.ring);
            give_up(&mut b, &d, &GROUP_PHONES);
        }
        Scenario::Transfer => {
            let d = dialog(scenario, &call_id, caller, CLAIRE);
            ring(&mut b, &d, &[CLAIRE]);
            b.wait(timing.ring);
            answer(&mut b, &d, &[CLAIRE], CLAIRE);
            b.wait(timing.talk);
            // A blind transfer: Claire's phone sends REFER, the trunk accepts
            // and calls Nadia in a new dialog (Referred-By), then reports the
            // outcome with NOTIFY and Claire's phone hangs up.
            let refer_to = format!("Refer-To: <sip:{NADIA}@{}>", PBX.ip());
            let referred_by = format!("Referred-By: <sip:{CLAIRE}@{}>", PBX.ip());
            b.push(d.callee_request("REFER", 1, CLAIRE, &format!("{refer_to}\n{referred_by}")));
            b.push([d.ok_to("REFER", 1, CLAIRE, TRUNK)]);
            let second_id = format!("demo-{nonce}-transfer@{}", PBX.ip());
            call_ids.push(second_id.clone());
            let second = dialog(scenario, &second_id, caller, NADIA).with_header(&referred_by);
            ring(&mut b, &second, &[NADIA]);
            b.push(d.caller_request(
                "NOTIFY",
                2,
                CLAIRE,
                "Event: refer\nSubscription-State: active;expires=60\nContent-Type: message/sipfrag",
            ));
            b.push(d.callee_request("BYE", 2, CLAIRE, ""));
            b.push([d.ok_to("BYE", 2, CLAIRE, TRUNK)]);
            b.wait(timing.ring.min(Duration::from_secs(4)));
            answer(&mut b, &second, &[NADIA], NADIA);
            b.wait(timing.talk);
            hang_up(&mut b, &second, NADIA, caller_hangs_up);
        }
    }
    Script {
        scenario,
        call_ids,
        steps: b.steps,
    }
}
