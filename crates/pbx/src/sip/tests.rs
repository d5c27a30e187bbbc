//! Golden call flows: SIP texts as Kamailio (stateful proxy, Record-Route,
//! siptrace `trace_mode=1`) mirrors them — every proxied message twice, the
//! received copy and the forwarded copy — fed on a fake clock, compared with the
//! exact list of call events.

use super::*;
use crate::model::{
    CallEventKind as K, CallId, Direction, Extension, Outcome, Party, Source, StopCause, Timestamp,
    Transfer, TransferKind,
};
use chrono::DateTime;
use std::net::SocketAddr;

const KAMAILIO: &str = "127.0.0.1:5060";
const TRUNK: &str = "127.0.0.1:5090";

/// One captured message.
#[derive(Debug, Clone)]
struct Msg {
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A SIP message from `head` (lines joined by `\n`, written here without
/// Content-Length) and `body`, with CRLF line ends and a correct Content-Length.
fn sip(src: &str, dst: &str, head: &str, body: &str) -> Msg {
    let body = body.replace('\n', "\r\n");
    let mut text = String::new();
    for line in head.lines().map(str::trim).filter(|l| !l.is_empty()) {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Msg {
        src: addr(src),
        dst: addr(dst),
        bytes: text.into_bytes(),
    }
}

fn sdp(port: u16, direction: &str) -> String {
    format!(
        "v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0 8\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n{direction}"
    )
}

fn at(seconds: i64) -> Timestamp {
    DateTime::from_timestamp(1_763_935_200 + seconds, 0).unwrap()
}

/// A call as Kamailio sees it: the caller's INVITE and what Kamailio does with it.
struct Flow {
    call_id: String,
    caller: &'static str,
    caller_user: &'static str,
    caller_tag: &'static str,
    from: String,
    to: String,
    request_uri: String,
    branch: String,
    cseq: u32,
    extra: String,
}

impl Flow {
    /// An inbound call from `caller_user` at the trunk to `callee`.
    fn new(call_id: &str, from_display: &str, caller_user: &'static str, callee: &str) -> Self {
        let display = if from_display.is_empty() {
            String::new()
        } else {
            format!("{from_display} ")
        };
        Flow {
            call_id: call_id.to_owned(),
            caller: TRUNK,
            caller_user,
            caller_tag: "4821SIPpTag001",
            from: format!("{display}<sip:{caller_user}@{TRUNK}>;tag=4821SIPpTag001"),
            to: format!("<sip:{callee}@{KAMAILIO}>"),
            request_uri: format!("sip:{callee}@{KAMAILIO}"),
            branch: format!("z9hG4bK-4821-{call_id}-0"),
            cseq: 1,
            extra: String::new(),
        }
    }

    fn placed_by_agent(mut self, phone: &'static str) -> Self {
        self.caller = phone;
        self.from = format!("<sip:{}@{KAMAILIO}>;tag=4821SIPpTag001", self.caller_user);
        self
    }

    fn with_header(mut self, line: &str) -> Self {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    fn port(&self) -> u16 {
        addr(self.caller).port()
    }

    /// The caller's INVITE as Kamailio received it.
    fn invite(&self) -> Msg {
        sip(
            self.caller,
            KAMAILIO,
            &format!(
                "INVITE {ruri} SIP/2.0
                Via: SIP/2.0/UDP {caller};branch={branch}
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: {cseq} INVITE
                Contact: <sip:{user}@{caller}>
                Max-Forwards: 70
                Subject: Fiche test
                {extra}
                Content-Type: application/sdp",
                ruri = self.request_uri,
                caller = self.caller,
                branch = self.branch,
                from = self.from,
                to = self.to,
                cid = self.call_id,
                cseq = self.cseq,
                user = self.caller_user,
                extra = self.extra,
            ),
            &sdp(6000, ""),
        )
    }

    /// Kamailio's 100 Trying to the caller.
    fn trying(&self) -> Msg {
        self.to_caller(100, "Trying", None)
    }

    /// The INVITE Kamailio forwards to a phone (its own Via on top, Record-Route).
    fn fork(&self, ext: &str, phone: &str, k_branch: &str) -> Msg {
        sip(
            KAMAILIO,
            phone,
            &format!(
                "INVITE sip:{ext}@{phone} SIP/2.0
                Record-Route: <sip:127.0.0.1;lr;ftag={tag};did=3a1.b1c1>
                Via: SIP/2.0/UDP 127.0.0.1:5060;branch={k_branch}
                Via: SIP/2.0/UDP {caller};rport={port};branch={branch}
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: {cseq} INVITE
                Contact: <sip:{user}@{caller}>
                Max-Forwards: 69
                Subject: Fiche test
                {extra}
                Content-Type: application/sdp",
                tag = self.caller_tag,
                caller = self.caller,
                port = self.port(),
                branch = self.branch,
                from = self.from,
                to = self.to,
                cid = self.call_id,
                cseq = self.cseq,
                user = self.caller_user,
                extra = self.extra,
            ),
            &sdp(6000, ""),
        )
    }

    fn to_tag(&self, tag: Option<&str>) -> String {
        match tag {
            Some(t) => format!("{};tag={t}", self.to),
            None => self.to.clone(),
        }
    }

    /// A phone's response to Kamailio's INVITE.
    fn phone_reply(
        &self,
        phone: &str,
        k_branch: &str,
        code: u16,
        reason: &str,
        tag: Option<&str>,
    ) -> Msg {
        let body = if code == 200 {
            sdp(7000, "")
        } else {
            String::new()
        };
        let content_type = if code == 200 {
            "Content-Type: application/sdp"
        } else {
            ""
        };
        sip(
            phone,
            KAMAILIO,
            &format!(
                "SIP/2.0 {code} {reason}
                Via: SIP/2.0/UDP 127.0.0.1:5060;branch={k_branch}
                Via: SIP/2.0/UDP {caller};rport={port};received=127.0.0.1;branch={branch}
                Record-Route: <sip:127.0.0.1;lr;ftag={ftag};did=3a1.b1c1>
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: {cseq} INVITE
                Contact: <sip:{phone}>
                {content_type}",
                caller = self.caller,
                port = self.port(),
                branch = self.branch,
                ftag = self.caller_tag,
                from = self.from,
                to = self.to_tag(tag),
                cid = self.call_id,
                cseq = self.cseq,
            ),
            &body,
        )
    }

    /// A response Kamailio sends to the caller (its own Via removed).
    fn to_caller(&self, code: u16, reason: &str, tag: Option<&str>) -> Msg {
        let body = if code == 200 {
            sdp(7000, "")
        } else {
            String::new()
        };
        let content_type = if code == 200 {
            "Content-Type: application/sdp"
        } else {
            ""
        };
        sip(
            KAMAILIO,
            self.caller,
            &format!(
                "SIP/2.0 {code} {reason}
                Via: SIP/2.0/UDP {caller};rport={port};received=127.0.0.1;branch={branch}
                Record-Route: <sip:127.0.0.1;lr;ftag={ftag};did=3a1.b1c1>
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: {cseq} INVITE
                {content_type}",
                caller = self.caller,
                port = self.port(),
                branch = self.branch,
                ftag = self.caller_tag,
                from = self.from,
                to = self.to_tag(tag),
                cid = self.call_id,
                cseq = self.cseq,
            ),
            &body,
        )
    }

    /// A phone's response as mirrored twice: received by Kamailio, relayed to the caller.
    fn relay(
        &self,
        phone: &str,
        k_branch: &str,
        code: u16,
        reason: &str,
        tag: Option<&str>,
    ) -> Vec<Msg> {
        vec![
            self.phone_reply(phone, k_branch, code, reason, tag),
            self.to_caller(code, reason, tag),
        ]
    }

    /// The caller's CANCEL as Kamailio received it, and Kamailio's 200 to it.
    fn cancel(&self) -> Vec<Msg> {
        let head = |first: &str, cseq_method: &str| {
            format!(
                "{first}
                Via: SIP/2.0/UDP {caller};branch={branch}
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: {cseq} {cseq_method}
                Max-Forwards: 70",
                caller = self.caller,
                branch = self.branch,
                from = self.from,
                to = self.to,
                cid = self.call_id,
                cseq = self.cseq,
            )
        };
        vec![
            sip(
                self.caller,
                KAMAILIO,
                &head(&format!("CANCEL {} SIP/2.0", self.request_uri), "CANCEL"),
                "",
            ),
            sip(
                KAMAILIO,
                self.caller,
                &head("SIP/2.0 200 canceling", "CANCEL"),
                "",
            ),
        ]
    }

    /// Kamailio cancelling the branch to a phone.
    fn cancel_fork(&self, ext: &str, phone: &str, k_branch: &str, reason: Option<&str>) -> Msg {
        let reason = reason.map(|r| format!("Reason: {r}")).unwrap_or_default();
        sip(
            KAMAILIO,
            phone,
            &format!(
                "CANCEL sip:{ext}@{phone} SIP/2.0
                Via: SIP/2.0/UDP 127.0.0.1:5060;branch={k_branch}
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: {cseq} CANCEL
                Max-Forwards: 70
                {reason}",
                from = self.from,
                to = self.to,
                cid = self.call_id,
                cseq = self.cseq,
            ),
            "",
        )
    }

    /// An in-dialog request from the caller: received from the caller, forwarded to the phone.
    #[allow(clippy::too_many_arguments)] // Reason: a test builder mirroring SIP's many fields.
    fn caller_request(
        &self,
        method: &str,
        cseq: u32,
        ext: &str,
        phone: &str,
        to_tag: &str,
        branch: &str,
        extra: &str,
        body: &str,
    ) -> Vec<Msg> {
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp"
        };
        let common = format!(
            "From: {from}
            To: {to};tag={to_tag}
            Call-ID: {cid}
            CSeq: {cseq} {method}
            Contact: <sip:{user}@{caller}>
            {extra}
            {content_type}",
            from = self.from,
            to = self.to,
            cid = self.call_id,
            user = self.caller_user,
            caller = self.caller,
        );
        let received = format!(
            "{method} sip:{ext}@{phone} SIP/2.0
            Via: SIP/2.0/UDP {caller};branch={branch}
            Route: <sip:127.0.0.1;lr;ftag={ftag};did=3a1.b1c1>
            Max-Forwards: 70
            {common}",
            caller = self.caller,
            ftag = self.caller_tag,
        );
        let forwarded = format!(
            "{method} sip:{ext}@{phone} SIP/2.0
            Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}.k
            Via: SIP/2.0/UDP {caller};rport={port};branch={branch}
            Max-Forwards: 69
            {common}",
            caller = self.caller,
            port = self.port(),
        );
        vec![
            sip(self.caller, KAMAILIO, &received, body),
            sip(KAMAILIO, phone, &forwarded, body),
        ]
    }

    /// An in-dialog request from the phone that answered (tag `to_tag`).
    #[allow(clippy::too_many_arguments)] // Reason: a test builder mirroring SIP's many fields.
    fn callee_request(
        &self,
        method: &str,
        cseq: u32,
        phone: &str,
        to_tag: &str,
        branch: &str,
        extra: &str,
        body: &str,
    ) -> Vec<Msg> {
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp"
        };
        let common = format!(
            "From: {to};tag={to_tag}
            To: {from}
            Call-ID: {cid}
            CSeq: {cseq} {method}
            Contact: <sip:{phone}>
            {extra}
            {content_type}",
            from = self.from,
            to = self.to,
            cid = self.call_id,
        );
        let ruri = format!("sip:{}@{}", self.caller_user, self.caller);
        let received = format!(
            "{method} {ruri} SIP/2.0
            Via: SIP/2.0/UDP {phone};branch={branch}
            Route: <sip:127.0.0.1;lr;ftag={ftag};did=3a1.b1c1>
            Max-Forwards: 70
            {common}",
            ftag = self.caller_tag,
        );
        let forwarded = format!(
            "{method} {ruri} SIP/2.0
            Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}.k
            Via: SIP/2.0/UDP {phone};rport;branch={branch}
            Max-Forwards: 69
            {common}"
        );
        vec![
            sip(phone, KAMAILIO, &received, body),
            sip(KAMAILIO, self.caller, &forwarded, body),
        ]
    }

    /// A 200 OK to an in-dialog request (ignored by the tracker, present for realism).
    fn ok_to(&self, method: &str, cseq: u32, to_tag: &str, phone: &str) -> Msg {
        sip(
            phone,
            KAMAILIO,
            &format!(
                "SIP/2.0 200 OK
                Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKok{cseq}
                From: {from}
                To: {to};tag={to_tag}
                Call-ID: {cid}
                CSeq: {cseq} {method}",
                from = self.from,
                to = self.to,
                cid = self.call_id,
            ),
            "",
        )
    }

    /// Events of a call answered by `ext` at `phone` (k_branch `kb`, To-tag `tag`).
    fn answered_by(&self, ext: &str, phone: &str, kb: &str, tag: &str) -> Vec<Msg> {
        let mut m = vec![self.invite(), self.trying(), self.fork(ext, phone, kb)];
        m.extend(self.relay(phone, kb, 180, "Ringing", Some(tag)));
        m.extend(self.relay(phone, kb, 200, "OK", Some(tag)));
        m.extend(self.caller_request("ACK", self.cseq, ext, phone, tag, "z9hG4bK-ack-1", "", ""));
        m
    }
}

fn tracker() -> SipTracker {
    SipTracker::new(SipTrackerConfig {
        agents: crate::ExtensionPatterns::new([r"2\d\d"]).unwrap(),
        ..SipTrackerConfig::default()
    })
}

/// Feeds `messages` one second apart and returns every event kind; each event
/// must belong to `call_id`, come from HEP, and `Ended` must be last.
fn run(tracker: &mut SipTracker, messages: &[Msg], call_id: &str) -> Vec<K> {
    let mut kinds = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        tracker
            .handle(at(i as i64), Some(m.src), Some(m.dst), &m.bytes)
            .unwrap_or_else(|e| {
                panic!(
                    "message {i} refused: {e}\n{}",
                    String::from_utf8_lossy(&m.bytes)
                )
            });
        while let Some(event) = tracker.poll_event() {
            assert_eq!(event.source, Source::Hep);
            assert_eq!(event.call_id, CallId::from_source_key(Source::Hep, call_id));
            kinds.push(event.kind);
        }
    }
    kinds
}

fn check(messages: &[Msg], call_id: &str, expected: &[K]) -> SipTracker {
    let mut t = tracker();
    let kinds = run(&mut t, messages, call_id);
    assert_eq!(kinds, expected);
    if matches!(expected.last(), Some(K::Ended { .. })) {
        assert_eq!(t.active_calls(), 0);
    }
    t
}

fn party(number: &str, name: Option<&str>) -> Party {
    Party {
        number: Some(number.to_owned()),
        name: name.map(str::to_owned),
        withheld: false,
    }
}

fn started(call_id: &str, direction: Direction, caller: Party, callee: &str) -> K {
    K::CallStarted {
        source_key: call_id.to_owned(),
        direction,
        caller,
        callee: party(callee, None),
        diverted_from: Vec::new(),
        queue: None,
    }
}

fn claire() -> Party {
    party("0612345678", Some("Claire Martin"))
}

fn ext(ext: &str) -> Extension {
    Extension::new(ext).unwrap()
}

fn ringing(e: &str) -> K {
    K::Ringing { extension: ext(e) }
}

fn answered(e: &str) -> K {
    K::Answered {
        extension: Some(ext(e)),
    }
}

fn stopped(e: &str, cause: StopCause) -> K {
    K::RingingStopped {
        extension: ext(e),
        cause,
    }
}

fn transferred(to: &str, kind: TransferKind) -> K {
    K::Transferred(Transfer {
        kind,
        by: None,
        transferee: None,
        to: Some(ext(to)),
    })
}

fn ended(outcome: Outcome, cause: &str) -> K {
    K::Ended {
        outcome,
        cause: cause.to_owned(),
    }
}

const P201: &str = "127.0.0.1:5071";
const P202: &str = "127.0.0.1:5072";
const P203: &str = "127.0.0.1:5073";
const KB0: &str = "z9hG4bK6a1b.3f0c7a9d1e2f4b5c6d7e8f9a0b1c2d3e.0";
const KB1: &str = "z9hG4bK6a1b.3f0c7a9d1e2f4b5c6d7e8f9a0b1c2d3e.1";
const KB2: &str = "z9hG4bK6a1b.3f0c7a9d1e2f4b5c6d7e8f9a0b1c2d3e.2";

#[test]
fn inbound_answered_then_caller_hangs_up() {
    let f = Flow::new(
        "answered-1@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = f.answered_by("201", P201, KB0, "p201");
    m.extend(f.caller_request("BYE", 2, "201", P201, "p201", "z9hG4bK-bye-1", "", ""));
    m.push(f.ok_to("BYE", 2, "p201", P201));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            answered("201"),
            ended(Outcome::Answered, "caller hung up"),
        ],
    );
}

#[test]
fn inbound_answered_then_agent_hangs_up() {
    let f = Flow::new(
        "answered-2@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = f.answered_by("201", P201, KB0, "p201");
    m.extend(f.callee_request("BYE", 1, P201, "p201", "z9hG4bK-bye-2", "", ""));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            answered("201"),
            ended(Outcome::Answered, "callee hung up"),
        ],
    );
}

#[test]
fn caller_hangs_up_while_ringing() {
    let f = Flow::new(
        "cancel-1@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = vec![f.invite(), f.trying(), f.fork("201", P201, KB0)];
    m.extend(f.relay(P201, KB0, 180, "Ringing", Some("p201")));
    m.extend(f.cancel());
    m.push(f.cancel_fork("201", P201, KB0, None));
    m.extend(f.relay(P201, KB0, 487, "Request Terminated", Some("p201")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            ended(Outcome::Missed, "caller hung up (CANCEL)"),
        ],
    );
}

#[test]
fn nobody_answers_480() {
    let f = Flow::new(
        "noanswer-480@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = vec![f.invite(), f.trying(), f.fork("201", P201, KB0)];
    m.extend(f.relay(P201, KB0, 180, "Ringing", Some("p201")));
    m.extend(f.relay(P201, KB0, 480, "Temporarily Unavailable", Some("p201")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            ended(Outcome::Missed, "480 Temporarily Unavailable"),
        ],
    );
}

#[test]
fn nobody_answers_408_after_kamailio_gives_up() {
    let f = Flow::new(
        "noanswer-408@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = vec![f.invite(), f.trying(), f.fork("201", P201, KB0)];
    m.extend(f.relay(P201, KB0, 180, "Ringing", Some("p201")));
    // fr_inv_timer fired: Kamailio cancels the phone and answers the caller 408.
    m.push(f.cancel_fork("201", P201, KB0, None));
    m.push(f.phone_reply(P201, KB0, 487, "Request Terminated", Some("p201")));
    m.push(f.to_caller(408, "Request Timeout", None));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            ended(Outcome::Missed, "408 Request Timeout"),
        ],
    );
}

#[test]
fn busy() {
    let f = Flow::new("busy@127.0.0.1", "\"Claire Martin\"", "0612345678", "201");
    let mut m = vec![f.invite(), f.trying(), f.fork("201", P201, KB0)];
    m.extend(f.relay(P201, KB0, 486, "Busy Here", Some("p201")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ended(Outcome::Busy, "486 Busy Here"),
        ],
    );
}

#[test]
fn rejected() {
    let f = Flow::new(
        "decline@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = vec![f.invite(), f.trying(), f.fork("201", P201, KB0)];
    m.extend(f.relay(P201, KB0, 180, "Ringing", Some("p201")));
    m.extend(f.relay(P201, KB0, 603, "Decline", Some("p201")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            ended(Outcome::Rejected, "603 Decline"),
        ],
    );
}

#[test]
fn ring_group_second_phone_answers() {
    let f = Flow::new(
        "group-600@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    let mut m = vec![
        f.invite(),
        f.trying(),
        f.fork("201", P201, KB0),
        f.fork("202", P202, KB1),
        f.fork("203", P203, KB2),
        f.phone_reply(P201, KB0, 100, "Trying", None),
    ];
    m.extend(f.relay(P201, KB0, 180, "Ringing", Some("p201")));
    m.extend(f.relay(P202, KB1, 180, "Ringing", Some("p202")));
    m.extend(f.relay(P203, KB2, 180, "Ringing", Some("p203")));
    m.extend(f.relay(P202, KB1, 200, "OK", Some("p202")));
    let elsewhere = Some("SIP;cause=200;text=\"Call completed elsewhere\"");
    m.push(f.cancel_fork("201", P201, KB0, elsewhere));
    m.push(f.cancel_fork("203", P203, KB2, elsewhere));
    m.push(f.phone_reply(P201, KB0, 487, "Request Terminated", Some("p201")));
    m.push(f.phone_reply(P203, KB2, 487, "Request Terminated", Some("p203")));
    m.extend(f.caller_request("ACK", 1, "202", P202, "p202", "z9hG4bK-ack-g", "", ""));
    m.extend(f.callee_request("BYE", 1, P202, "p202", "z9hG4bK-bye-g", "", ""));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "600"),
            ringing("201"),
            ringing("202"),
            ringing("203"),
            answered("202"),
            stopped("201", StopCause::AnsweredElsewhere),
            stopped("203", StopCause::AnsweredElsewhere),
            ended(Outcome::Answered, "callee hung up"),
        ],
    );
}

/// Kamailio's processes mirror on their own: a phone can answer a forked INVITE
/// (and the answer be relayed) before the process that forked it has mirrored
/// the INVITE. The ring group still rings the phones, not the group number.
#[test]
fn ring_group_phone_reply_mirrored_before_its_invite() {
    let f = Flow::new(
        "early-reply@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    // Phones whose Contact names no extension: the late INVITE names it.
    let mut m = vec![f.invite(), f.trying()];
    m.extend(f.relay(P201, KB0, 180, "Ringing", Some("p201")));
    m.push(f.fork("201", P201, KB0));
    m.push(f.fork("202", P202, KB1));
    m.extend(f.relay(P202, KB1, 180, "Ringing", Some("p202")));
    m.extend(f.relay(P202, KB1, 200, "OK", Some("p202")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "600"),
            ringing("201"),
            ringing("202"),
            answered("202"),
            stopped("201", StopCause::AnsweredElsewhere),
        ],
    );

    // Phones whose Contact user is their extension (sipp, most desk phones):
    // they ring at once, and the late INVITE changes nothing.
    let with_user = |msg: Msg, ext: &str, phone: &str| Msg {
        bytes: String::from_utf8_lossy(&msg.bytes)
            .replace(
                &format!("Contact: <sip:{phone}>"),
                &format!("Contact: <sip:{ext}@{phone}>"),
            )
            .into_bytes(),
        ..msg
    };
    let g = Flow::new(
        "early-reply-contact@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    let mut m = vec![
        g.invite(),
        g.trying(),
        with_user(
            g.phone_reply(P201, KB0, 180, "Ringing", Some("p201")),
            "201",
            P201,
        ),
        g.to_caller(180, "Ringing", Some("p201")),
        g.fork("201", P201, KB0),
        g.fork("202", P202, KB1),
        with_user(
            g.phone_reply(P202, KB1, 486, "Busy Here", Some("p202")),
            "202",
            P202,
        ),
        g.fork("203", P203, KB2),
    ];
    m.extend(g.relay(P201, KB0, 200, "OK", Some("p201")));
    check(
        &m,
        &g.call_id,
        &[
            started(&g.call_id, Direction::Inbound, claire(), "600"),
            ringing("201"),
            answered("201"),
        ],
    );
}

#[test]
fn ring_group_phone_busy_while_others_ring_then_caller_gives_up() {
    let f = Flow::new(
        "group-busy@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    let mut m = vec![
        f.invite(),
        f.fork("201", P201, KB0),
        f.fork("202", P202, KB1),
    ];
    m.extend(f.relay(P201, KB0, 180, "Ringing", Some("p201")));
    m.extend(f.relay(P202, KB1, 180, "Ringing", Some("p202")));
    // 201 declines with busy: Kamailio keeps it and waits for 202.
    m.push(f.phone_reply(P201, KB0, 486, "Busy Here", Some("p201")));
    m.extend(f.cancel());
    m.push(f.cancel_fork("202", P202, KB1, None));
    m.extend(f.relay(P202, KB1, 487, "Request Terminated", Some("p202")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "600"),
            ringing("201"),
            ringing("202"),
            stopped("201", StopCause::Busy),
            ended(Outcome::Missed, "caller hung up (CANCEL)"),
        ],
    );
}

#[test]
fn hold_and_resume_only_on_direction_changes() {
    let f = Flow::new("hold@127.0.0.1", "\"Claire Martin\"", "0612345678", "201");
    let mut m = f.answered_by("201", P201, KB0, "p201");
    // The agent holds (sendonly), a 200 answers recvonly (ignored), ...
    m.extend(f.callee_request(
        "INVITE",
        1,
        P201,
        "p201",
        "z9hG4bK-hold",
        "",
        &sdp(7000, "a=sendonly\n"),
    ));
    m.push(f.ok_to("INVITE", 1, "p201", P201));
    // ... a session refresh while held changes nothing, ...
    m.extend(f.callee_request(
        "INVITE",
        2,
        P201,
        "p201",
        "z9hG4bK-refresh",
        "",
        &sdp(7000, "a=sendonly\n"),
    ));
    // ... resume with no direction attribute (sendrecv), another refresh, then hold old style.
    m.extend(f.callee_request(
        "INVITE",
        3,
        P201,
        "p201",
        "z9hG4bK-resume",
        "",
        &sdp(7000, ""),
    ));
    m.extend(f.callee_request(
        "UPDATE",
        4,
        P201,
        "p201",
        "z9hG4bK-upd",
        "",
        &sdp(7000, "a=sendrecv\n"),
    ));
    m.extend(f.callee_request(
        "INVITE",
        5,
        P201,
        "p201",
        "z9hG4bK-hold2",
        "",
        &sdp(7000, "").replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
    ));
    m.extend(f.caller_request("BYE", 2, "201", P201, "p201", "z9hG4bK-bye-h", "", ""));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            answered("201"),
            K::Held,
            K::Resumed,
            K::Held,
            ended(Outcome::Answered, "caller hung up"),
        ],
    );
}

#[test]
fn blind_transfer_with_refer() {
    let f = Flow::new(
        "refer-blind@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = f.answered_by("201", P201, KB0, "p201");
    m.extend(f.callee_request(
        "REFER",
        1,
        P201,
        "p201",
        "z9hG4bK-refer",
        "Refer-To: <sip:202@127.0.0.1:5060>\nReferred-By: <sip:201@127.0.0.1:5060>",
        "",
    ));
    m.push(sip(P201, KAMAILIO, "SIP/2.0 202 Accepted\nVia: SIP/2.0/UDP x;branch=z9hG4bKa\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: refer-blind@127.0.0.1\nCSeq: 1 REFER", ""));
    m.extend(f.caller_request(
        "NOTIFY",
        2,
        "201",
        P201,
        "p201",
        "z9hG4bK-notify",
        "Event: refer\nSubscription-State: terminated;reason=noresource",
        "",
    ));
    m.extend(f.callee_request("BYE", 2, P201, "p201", "z9hG4bK-bye-r", "", ""));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            answered("201"),
            transferred("202", TransferKind::Blind),
            ended(Outcome::Answered, "callee hung up"),
        ],
    );
}

#[test]
fn attended_transfer_with_replaces() {
    let f = Flow::new(
        "refer-attended@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = f.answered_by("201", P201, KB0, "p201");
    // Compact form `r` for Refer-To.
    m.extend(f.callee_request(
        "REFER",
        1,
        P201,
        "p201",
        "z9hG4bK-refer-a",
        "r: <sip:203@127.0.0.1:5060?Replaces=consult-7%40127.0.0.1%3Bto-tag%3Dp203%3Bfrom-tag%3Dq201>",
        "",
    ));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            answered("201"),
            transferred("203", TransferKind::Attended),
        ],
    );
}

#[test]
fn withheld_callers() {
    let withheld = Party {
        number: None,
        name: None,
        withheld: true,
    };
    let f = Flow::new(
        "privacy@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    )
    .with_header("P-Asserted-Identity: \"Claire Martin\" <sip:0612345678@127.0.0.1>")
    .with_header("Privacy: id");
    check(
        &[f.invite()],
        &f.call_id,
        &[started(
            &f.call_id,
            Direction::Inbound,
            withheld.clone(),
            "201",
        )],
    );

    let mut f = Flow::new("anonymous@127.0.0.1", "\"Anonymous\"", "anonymous", "201");
    f.from = "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=4821SIPpTag001".into();
    check(
        &[f.invite()],
        &f.call_id,
        &[started(
            &f.call_id,
            Direction::Inbound,
            withheld.clone(),
            "201",
        )],
    );

    let f = Flow::new("rpid@127.0.0.1", "", "0612345678", "201")
        .with_header("Remote-Party-ID: \"Claire\" <sip:0612345678@127.0.0.1>;party=calling;privacy=full;screen=yes");
    check(
        &[f.invite()],
        &f.call_id,
        &[started(&f.call_id, Direction::Inbound, withheld, "201")],
    );
}

#[test]
fn asserted_identity_wins_over_from() {
    let f = Flow::new("pai@127.0.0.1", "\"Accueil\"", "0140000000", "201").with_header(
        "P-Asserted-Identity: \"Claire Martin\" <sip:0612345678@127.0.0.1>, <tel:0612345678>",
    );
    check(
        &[f.invite()],
        &f.call_id,
        &[started(&f.call_id, Direction::Inbound, claire(), "201")],
    );
}

#[test]
fn display_names_are_kept_exactly() {
    for (display, expected) in [
        (
            r#""<script>alert(1)</script>""#,
            "<script>alert(1)</script>",
        ),
        (r#""Élodie Müller""#, "Élodie Müller"),
        (r#""Say \"hi\" \\ bye""#, r#"Say "hi" \ bye"#),
        ("Élodie Müller", "Élodie Müller"),
    ] {
        let f = Flow::new("names@127.0.0.1", display, "0611111111", "201");
        check(
            &[f.invite()],
            &f.call_id,
            &[started(
                &f.call_id,
                Direction::Inbound,
                party("0611111111", Some(expected)),
                "201",
            )],
        );
    }
}

#[test]
fn diversion_is_recorded() {
    let f = Flow::new(
        "diverted@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    )
    .with_header("Diversion: <sip:202@127.0.0.1>;reason=no-answer;counter=1")
    .with_header("Diversion: <sip:0140000000@127.0.0.1>;reason=unconditional;counter=1");
    let mut expected = started(&f.call_id, Direction::Inbound, claire(), "201");
    if let K::CallStarted { diverted_from, .. } = &mut expected {
        *diverted_from = vec!["0140000000".into(), "202".into()];
    }
    check(&[f.invite()], &f.call_id, &[expected]);
}

#[test]
fn challenge_then_resent_invite_is_one_call() {
    let mut f = Flow::new("auth@127.0.0.1", "\"Claire Martin\"", "0612345678", "201");
    let mut m = vec![
        f.invite(),
        f.to_caller(407, "Proxy Authentication Required", Some("k407")),
    ];
    m.extend(f.caller_request("ACK", 1, "201", KAMAILIO, "k407", &f.branch.clone(), "", ""));
    f.cseq = 2;
    f.branch = "z9hG4bK-4821-auth-1".into();
    f.extra = "Proxy-Authorization: Digest username=\"trunk\", realm=\"127.0.0.1\", nonce=\"abc\", uri=\"sip:201@127.0.0.1:5060\", response=\"0123456789abcdef0123456789abcdef\"\n".into();
    m.extend(f.answered_by("201", P201, KB0, "p201"));
    m.extend(f.callee_request("BYE", 1, P201, "p201", "z9hG4bK-bye-a", "", ""));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            answered("201"),
            ended(Outcome::Answered, "callee hung up"),
        ],
    );
}

#[test]
fn challenge_without_retry_ends_after_the_grace() {
    let f = Flow::new(
        "auth-gone@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut t = tracker();
    let kinds = run(
        &mut t,
        &[f.invite(), f.to_caller(401, "Unauthorized", Some("k401"))],
        &f.call_id,
    );
    assert_eq!(
        kinds.len(),
        1,
        "a challenge alone does not end the call: {kinds:?}"
    );
    let deadline = t.next_timeout().unwrap();
    assert!(deadline <= at(1) + chrono::Duration::seconds(32));
    t.handle_timeout(at(1) + chrono::Duration::seconds(33));
    assert_eq!(
        t.poll_event().map(|e| e.kind),
        Some(ended(Outcome::Failed, "401 Unauthorized"))
    );
}

#[test]
fn retransmissions_change_nothing() {
    let f = Flow::new(
        "retrans@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let invite = f.invite();
    let ringing_copy = f.relay(P201, KB0, 180, "Ringing", Some("p201"));
    let ok = f.relay(P201, KB0, 200, "OK", Some("p201"));
    let mut m = vec![
        invite.clone(),
        invite.clone(),
        f.fork("201", P201, KB0),
        invite,
    ];
    m.extend(ringing_copy.clone());
    m.extend(ringing_copy);
    m.extend(ok.clone());
    m.extend(ok.clone());
    m.extend(ok);
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ringing("201"),
            answered("201"),
        ],
    );
}

#[test]
fn retransmission_after_the_end_does_not_start_a_new_call() {
    let f = Flow::new("late@127.0.0.1", "\"Claire Martin\"", "0612345678", "201");
    let mut m = vec![f.invite()];
    m.extend(f.relay(P201, KB0, 486, "Busy Here", None));
    m.push(f.invite());
    let mut t = tracker();
    let kinds = run(&mut t, &m, &f.call_id);
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    // Past the dedup window, the lingering call still swallows it.
    t.handle(at(40), None, None, &f.invite().bytes).unwrap();
    assert!(t.poll_event().is_none());
}

#[test]
fn silent_calls_are_reaped() {
    let f = Flow::new("silent@127.0.0.1", "\"Claire Martin\"", "0612345678", "201");
    let m = f.answered_by("201", P201, KB0, "p201");
    let mut t = tracker();
    let kinds = run(&mut t, &m, &f.call_id);
    assert_eq!(kinds.len(), 3);
    let last = at(m.len() as i64);
    let four_hours = chrono::Duration::hours(4);
    assert!(t.next_timeout().is_some_and(|d| d <= last + four_hours));
    t.handle_timeout(last + chrono::Duration::hours(3));
    assert!(t.poll_event().is_none(), "still within the silence timeout");
    assert_eq!(t.active_calls(), 1);
    t.handle_timeout(last + four_hours + chrono::Duration::seconds(1));
    assert_eq!(
        t.poll_event().map(|e| e.kind),
        Some(ended(Outcome::Failed, "signal lost"))
    );
    assert_eq!(t.active_calls(), 0);
    // The ended call lingers, then is forgotten.
    t.handle_timeout(last + four_hours + chrono::Duration::seconds(120));
    assert!(t.next_timeout().is_none());

    // A call that only rings is reaped after the ringing timeout.
    let g = Flow::new(
        "silent-ring@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut m = vec![g.invite(), g.fork("201", P201, KB0)];
    m.extend(g.relay(P201, KB0, 180, "Ringing", Some("p201")));
    let mut t = tracker();
    run(&mut t, &m, &g.call_id);
    t.handle_timeout(at(3) + chrono::Duration::minutes(6));
    assert_eq!(
        t.poll_event().map(|e| e.kind),
        Some(ended(Outcome::Failed, "signal lost"))
    );
}

#[test]
fn a_flood_of_setups_never_answered_is_gone_long_before_answered_calls() {
    // One answered call, then 1,000 INVITEs that never get any answer.
    let f = Flow::new("kept@127.0.0.1", "\"Claire Martin\"", "0612345678", "201");
    let mut t = tracker();
    let m = f.answered_by("201", P201, KB0, "p201");
    run(&mut t, &m, &f.call_id);
    for n in 0..1000 {
        let g = Flow::new(&format!("flood-{n}@127.0.0.1"), "", "0612345678", "201");
        let invite = g.invite();
        t.handle(at(10), Some(invite.src), Some(invite.dst), &invite.bytes)
            .unwrap();
    }
    while t.poll_event().is_some() {}
    assert_eq!(t.active_calls(), 1001);
    // The setups end at the ringing timeout (5 minutes), the answered call does not.
    t.handle_timeout(at(10) + chrono::Duration::minutes(5) + chrono::Duration::seconds(1));
    let mut lost = 0;
    while let Some(event) = t.poll_event() {
        assert_eq!(event.kind, ended(Outcome::Failed, "signal lost"));
        lost += 1;
    }
    assert_eq!((lost, t.active_calls()), (1000, 1));
    // Their lingering state is forgotten a little later.
    t.handle_timeout(at(10) + chrono::Duration::minutes(7));
    assert_eq!(t.active_calls(), 1);
    assert!(
        t.next_timeout()
            .is_some_and(|d| d > at(10) + chrono::Duration::hours(3)),
        "only the answered call's silence timer is left"
    );
}

#[test]
fn messages_of_a_call_keep_it_alive() {
    let f = Flow::new("alive@127.0.0.1", "\"Claire Martin\"", "0612345678", "201");
    let mut t = tracker();
    run(&mut t, &f.answered_by("201", P201, KB0, "p201"), &f.call_id);
    let mut now = at(10);
    for i in 0..5 {
        now += chrono::Duration::hours(3);
        let refresh = f.callee_request(
            "UPDATE",
            10 + i,
            P201,
            "p201",
            &format!("z9hG4bK-st{i}"),
            "",
            "",
        );
        for m in refresh {
            t.handle(now, Some(m.src), Some(m.dst), &m.bytes).unwrap();
        }
        t.handle_timeout(now);
        assert!(t.poll_event().is_none());
    }
    assert_eq!(t.active_calls(), 1);
}

/// The far end of an outbound call is no agent's phone: no `Ringing` (no pop, no
/// ringing agent on the board) and its answer names no extension.
#[test]
fn outbound_call_raises_no_ringing_and_names_no_answering_extension() {
    let f = Flow::new("outbound@127.0.0.1", "", "201", "0612345678").placed_by_agent(P201);
    let trunk = TRUNK;
    let mut m = vec![f.invite(), f.trying(), f.fork("0612345678", trunk, KB0)];
    m.extend(f.relay(trunk, KB0, 183, "Session Progress", Some("t1")));
    m.extend(f.relay(trunk, KB0, 200, "OK", Some("t1")));
    m.extend(f.callee_request("BYE", 1, trunk, "t1", "z9hG4bK-bye-o", "", ""));
    check(
        &m,
        &f.call_id,
        &[
            started(
                &f.call_id,
                Direction::Outbound,
                party("201", None),
                "0612345678",
            ),
            K::Answered { extension: None },
            ended(Outcome::Answered, "callee hung up"),
        ],
    );
}

#[test]
fn direct_call_without_proxy_rings_the_request_uri_user() {
    // Two phones talking directly (or one leg of a B2BUA): no deeper leg exists.
    let text = "INVITE sip:202@127.0.0.1:5072 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-direct-1
        From: \"Agent 201\" <sip:201@127.0.0.1>;tag=d201
        To: <sip:202@127.0.0.1>
        Call-ID: direct@127.0.0.1
        CSeq: 7 INVITE";
    let reply = |code: u16, reason: &str| {
        sip(
            P202,
            P201,
            &format!(
                "SIP/2.0 {code} {reason}
                Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-direct-1
                From: \"Agent 201\" <sip:201@127.0.0.1>;tag=d201
                To: <sip:202@127.0.0.1>;tag=d202
                Call-ID: direct@127.0.0.1
                CSeq: 7 INVITE"
            ),
            "",
        )
    };
    let m = vec![
        sip(P201, P202, text, ""),
        reply(180, "Ringing"),
        reply(200, "OK"),
    ];
    check(
        &m,
        "direct@127.0.0.1",
        &[
            started(
                "direct@127.0.0.1",
                Direction::Internal,
                party("201", Some("Agent 201")),
                "202",
            ),
            ringing("202"),
            answered("202"),
        ],
    );
}

#[test]
fn lf_only_and_compact_headers_are_understood() {
    let text = "INVITE sip:201@127.0.0.1:5060 SIP/2.0\n\
        v: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-compact\n\
        f: \"Claire Martin\" <sip:0612345678@127.0.0.1>;tag=c1\n\
        t: <sip:201@127.0.0.1>\n\
        i: compact@127.0.0.1\n\
        CSeq: 1 INVITE\n\
        m: <sip:0612345678@127.0.0.1:5090>\n\
        Subject: folded\n  over two lines\n\
        l: 0\n\n";
    let mut t = tracker();
    t.handle(at(0), None, None, text.as_bytes()).unwrap();
    assert_eq!(
        t.poll_event().map(|e| e.kind),
        Some(started(
            "compact@127.0.0.1",
            Direction::Inbound,
            claire(),
            "201"
        ))
    );
}

#[test]
fn non_call_traffic_is_ignored() {
    let register = sip(
        P201,
        KAMAILIO,
        "REGISTER sip:127.0.0.1 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-reg
        From: <sip:201@127.0.0.1>;tag=r1
        To: <sip:201@127.0.0.1>
        Call-ID: reg-201@127.0.0.1
        CSeq: 1 REGISTER
        Contact: <sip:201@127.0.0.1:5071>
        Expires: 3600",
        "",
    );
    let options = sip(
        KAMAILIO,
        P201,
        "OPTIONS sip:201@127.0.0.1:5071 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-opt
        From: <sip:ping@127.0.0.1>;tag=o1
        To: <sip:201@127.0.0.1:5071>
        Call-ID: opt@127.0.0.1
        CSeq: 10 OPTIONS",
        "",
    );
    let ok = sip(
        P201,
        KAMAILIO,
        "SIP/2.0 200 OK
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-opt
        From: <sip:ping@127.0.0.1>;tag=o1
        To: <sip:201@127.0.0.1:5071>;tag=x
        Call-ID: opt@127.0.0.1
        CSeq: 10 OPTIONS",
        "",
    );
    let others: Vec<Msg> = [
        "SUBSCRIBE",
        "NOTIFY",
        "MESSAGE",
        "PUBLISH",
        "INFO",
        "FOOBAR",
    ]
    .iter()
    .map(|method| {
        sip(
            P201,
            KAMAILIO,
            &format!(
                "{method} sip:202@127.0.0.1 SIP/2.0
                    Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-{method}
                    From: <sip:201@127.0.0.1>;tag=s1
                    To: <sip:202@127.0.0.1>
                    Call-ID: other-{method}@127.0.0.1
                    CSeq: 1 {method}"
            ),
            "",
        )
    })
    .collect();
    let mut m = vec![register, options, ok];
    m.extend(others);
    let t = check(&m, "none", &[]);
    assert_eq!(t.active_calls(), 0);
    assert!(t.next_timeout().is_none());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut t = tracker();
    let cases: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03 garbage".to_vec(),
        b"HEP3\x00\x10".to_vec(),
        b"INVITE sip:201@h SIP/2.0\r\nVia SIP/2.0/UDP x\r\n\r\n".to_vec(),
        b"INVITE sip:201@h SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nFrom: a\r\nTo: b\r\n\r\n".to_vec(),
        b"INVITE sip:201@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: lots INVITE\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\n\r\n".to_vec(),
        b"SIP/2.0 2000 OK\r\n\r\n".to_vec(),
        b"INVITE \xff\xfe SIP/2.0\r\n\r\n".to_vec(),
        vec![0xff; 70_000],
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let result = t.handle(at(0), None, None, bytes);
        assert!(result.is_err(), "case {i} accepted");
    }
    assert!(t.poll_event().is_none());
    // Keep-alives are not errors.
    assert!(t.handle(at(0), None, None, b"\r\n\r\n").is_ok());
    // Errors name what failed.
    let e = t.handle(at(0), None, None, &cases[3]).unwrap_err();
    assert_eq!(e.to_string(), "SIP message without a Via header");
}

#[test]
fn the_oldest_unanswered_call_is_dropped_at_the_cap() {
    let mut t = SipTracker::new(SipTrackerConfig {
        max_calls: 2,
        ..SipTrackerConfig::default()
    });
    let flows: Vec<Flow> = (0..3)
        .map(|i| Flow::new(&format!("cap-{i}@127.0.0.1"), "", "0612345678", "201"))
        .collect();
    let mut events = Vec::new();
    for (i, f) in flows.iter().enumerate() {
        t.handle(at(i as i64), None, None, &f.invite().bytes)
            .unwrap();
        while let Some(e) = t.poll_event() {
            events.push((e.call_id, e.kind.name()));
        }
    }
    let id = |i: usize| CallId::from_source_key(Source::Hep, &flows[i].call_id);
    assert_eq!(
        events,
        vec![
            (id(0), "call_started"),
            (id(1), "call_started"),
            (id(0), "ended"),
            (id(2), "call_started"),
        ]
    );
    assert_eq!(t.active_calls(), 2);
}

#[test]
fn phones_registered_under_another_contact_user_ring_as_their_extension() {
    let phone = "127.0.0.1:5074";
    let register = |expires: u32| {
        sip(
            phone,
            KAMAILIO,
            &format!(
                "REGISTER sip:127.0.0.1 SIP/2.0
                Via: SIP/2.0/UDP 127.0.0.1:5074;branch=z9hG4bK-reg-{expires}
                From: <sip:204@127.0.0.1>;tag=r204
                To: <sip:204@127.0.0.1>
                Call-ID: reg-204@127.0.0.1
                CSeq: {expires} REGISTER
                m: <sip:yealink-3f2a@127.0.0.1:5074;transport=udp>;expires={expires}"
            ),
            "",
        )
    };
    let f = Flow::new(
        "registered@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    let mut m = vec![
        register(3600),
        f.invite(),
        f.fork("yealink-3f2a", phone, KB0),
    ];
    m.extend(f.relay(phone, KB0, 180, "Ringing", Some("y1")));
    m.extend(f.relay(phone, KB0, 200, "OK", Some("y1")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "600"),
            ringing("204"),
            answered("204"),
        ],
    );

    // Once unregistered, the Request-URI user is all there is.
    let g = Flow::new(
        "unregistered@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    let mut m = vec![
        register(3600),
        register(0),
        g.invite(),
        g.fork("yealink-3f2a", phone, KB0),
    ];
    m.extend(g.relay(phone, KB0, 180, "Ringing", Some("y1")));
    check(
        &m,
        &g.call_id,
        &[
            started(&g.call_id, Direction::Inbound, claire(), "600"),
            ringing("yealink-3f2a"),
        ],
    );
}

#[test]
fn lost_caller_invite_copy_does_not_let_one_fork_end_the_group() {
    // Only Kamailio's forwarded copies were mirrored: the forks have an unseen parent.
    let f = Flow::new(
        "lost-copy@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    let mut m = vec![f.fork("201", P201, KB0), f.fork("202", P202, KB1)];
    m.push(f.phone_reply(P201, KB0, 180, "Ringing", Some("p201")));
    m.push(f.phone_reply(P202, KB1, 180, "Ringing", Some("p202")));
    m.push(f.phone_reply(P201, KB0, 486, "Busy Here", Some("p201")));
    m.push(f.phone_reply(P202, KB1, 200, "OK", Some("p202")));
    check(
        &m,
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "600"),
            ringing("201"),
            ringing("202"),
            stopped("201", StopCause::Busy),
            answered("202"),
        ],
    );
}

#[test]
fn all_phones_failing_ends_the_call_when_the_final_to_the_caller_is_lost() {
    let f = Flow::new(
        "lost-final@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "600",
    );
    let mut m = vec![
        f.invite(),
        f.fork("201", P201, KB0),
        f.fork("202", P202, KB1),
    ];
    m.push(f.phone_reply(P201, KB0, 486, "Busy Here", Some("p201")));
    m.push(f.phone_reply(P202, KB1, 486, "Busy Here", Some("p202")));
    let mut t = tracker();
    let kinds = run(&mut t, &m, &f.call_id);
    assert_eq!(
        kinds,
        vec![started(&f.call_id, Direction::Inbound, claire(), "600")]
    );
    t.handle_timeout(at(3) + chrono::Duration::seconds(5));
    assert_eq!(
        t.poll_event().map(|e| e.kind),
        Some(ended(Outcome::Busy, "486 Busy Here"))
    );
}

/// Replays a capture file (records of a 4-byte big-endian length and one HEP
/// datagram) through the HEP decoder and a tracker; reaps at the end.
fn replay(capture: &[u8]) -> Vec<K> {
    let mut t = tracker();
    let mut kinds = Vec::new();
    let mut rest = capture;
    let mut last = at(0);
    while let [a, b, c, d, tail @ ..] = rest {
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        let (datagram, after) = tail.split_at(len);
        rest = after;
        let packet = crate::hep::decode(datagram).unwrap();
        assert!(packet.is_sip());
        last = packet.timestamp.unwrap_or(last);
        t.handle(last, packet.src, packet.dst, &packet.payload)
            .unwrap();
        while let Some(event) = t.poll_event() {
            kinds.push(event.kind);
        }
    }
    t.handle_timeout(last + chrono::Duration::minutes(10));
    kinds.extend(std::iter::from_fn(|| t.poll_event().map(|e| e.kind)));
    assert_eq!(t.active_calls(), 0);
    kinds
}

/// Scenario name, capture, (direction, caller, callee) of CallStarted, the events after it.
type CapturedCase<'a> = (&'a str, &'a [u8], (Direction, Party, String), Vec<K>);

#[test]
fn captured_kamailio_flows() {
    let client = || party("+33612345678", Some("Client Test"));
    let inbound = |caller: Party, callee: &str| (Direction::Inbound, caller, callee.to_owned());
    let answered_by =
        |ext: &str, who: &str| vec![ringing(ext), answered(ext), ended(Outcome::Answered, who)];
    let cases: Vec<CapturedCase<'_>> = vec![
        (
            "answered-caller-bye",
            include_bytes!("captures/answered-caller-bye.cap"),
            inbound(client(), "201"),
            answered_by("201", "caller hung up"),
        ),
        (
            "answered-agent-bye",
            include_bytes!("captures/answered-agent-bye.cap"),
            inbound(client(), "201"),
            answered_by("201", "callee hung up"),
        ),
        (
            "missed-cancel",
            include_bytes!("captures/missed-cancel.cap"),
            inbound(client(), "201"),
            vec![
                ringing("201"),
                ended(Outcome::Missed, "caller hung up (CANCEL)"),
            ],
        ),
        (
            "missed-480",
            include_bytes!("captures/missed-480.cap"),
            inbound(client(), "201"),
            vec![
                ringing("201"),
                ended(Outcome::Missed, "480 Temporarily Unavailable"),
            ],
        ),
        (
            "missed-408",
            include_bytes!("captures/missed-408.cap"),
            inbound(client(), "201"),
            vec![
                ringing("201"),
                ended(Outcome::Missed, "408 Request Timeout"),
            ],
        ),
        (
            "busy-486",
            include_bytes!("captures/busy-486.cap"),
            inbound(client(), "201"),
            vec![ended(Outcome::Busy, "486 Busy Here")],
        ),
        (
            "hold-resume",
            include_bytes!("captures/hold-resume.cap"),
            inbound(client(), "201"),
            vec![
                ringing("201"),
                answered("201"),
                K::Held,
                K::Resumed,
                ended(Outcome::Answered, "caller hung up"),
            ],
        ),
        (
            "blind-transfer",
            include_bytes!("captures/blind-transfer.cap"),
            inbound(client(), "201"),
            vec![
                ringing("201"),
                answered("201"),
                transferred("202", TransferKind::Blind),
                ended(Outcome::Answered, "callee hung up"),
            ],
        ),
        (
            "ring-group",
            include_bytes!("captures/ring-group.cap"),
            inbound(client(), "600"),
            vec![
                ringing("201"),
                ringing("202"),
                ringing("203"),
                answered("202"),
                stopped("201", StopCause::AnsweredElsewhere),
                stopped("203", StopCause::AnsweredElsewhere),
                ended(Outcome::Answered, "caller hung up"),
            ],
        ),
        (
            "withheld",
            include_bytes!("captures/withheld.cap"),
            inbound(
                Party {
                    number: None,
                    name: None,
                    withheld: true,
                },
                "201",
            ),
            answered_by("201", "caller hung up"),
        ),
        (
            "display-name-script",
            include_bytes!("captures/display-name-script.cap"),
            inbound(
                party("0612345678", Some("<script>alert(1)</script>")),
                "201",
            ),
            answered_by("201", "caller hung up"),
        ),
        (
            "display-name-utf8",
            include_bytes!("captures/display-name-utf8.cap"),
            inbound(party("+33612345678", Some("Élodie Müller")), "201"),
            answered_by("201", "caller hung up"),
        ),
        (
            "internal-challenged",
            include_bytes!("captures/internal-challenged.cap"),
            (
                Direction::Internal,
                party("203", Some("Remote Agent")),
                "201".to_owned(),
            ),
            answered_by("201", "caller hung up"),
        ),
        (
            "outbound",
            include_bytes!("captures/outbound.cap"),
            (
                Direction::Outbound,
                party("201", Some("Claire")),
                "0612345678".to_owned(),
            ),
            vec![
                K::Answered { extension: None },
                ended(Outcome::Answered, "caller hung up"),
            ],
        ),
    ];
    for (name, capture, (direction, caller, callee), rest) in cases {
        let kinds = replay(capture);
        let Some(K::CallStarted { source_key, .. }) = kinds.first() else {
            panic!("{name}: no CallStarted first: {kinds:?}");
        };
        let mut expected = vec![started(source_key, direction, caller, &callee)];
        expected.extend(rest);
        assert_eq!(kinds, expected, "scenario {name}");
    }
}

/// The real ring-group capture, with each forked INVITE mirrored late: after
/// its phone's 180 and the copy relayed to the caller, as Kamailio's workers
/// can deliver them. The phones ring, not the group number, as in order.
#[test]
fn captured_ring_group_with_every_fork_mirrored_after_its_ringing() {
    let capture: &[u8] = include_bytes!("captures/ring-group.cap");
    let mut records: Vec<&[u8]> = Vec::new();
    let mut rest = capture;
    while let [a, b, c, d, tail @ ..] = rest {
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        let (datagram, after) = tail.split_at(len);
        records.push(datagram);
        rest = after;
    }
    let packet = |r: &[u8]| crate::hep::decode(r).unwrap();
    // The first INVITE to each phone: two Vias (Kamailio's on the caller's).
    let mut phones = Vec::new();
    let forks: Vec<usize> = (0..records.len())
        .filter(|&i| {
            let p = packet(records[i]);
            let fork = p.payload.starts_with(b"INVITE ")
                && String::from_utf8_lossy(&p.payload)
                    .matches("\nVia:")
                    .count()
                    == 2;
            let first = fork && !phones.contains(&p.dst);
            if first {
                phones.push(p.dst);
            }
            first
        })
        .collect();
    assert_eq!(forks.len(), 3, "the capture forks to 201, 202 and 203");
    let mut moved = records.clone();
    for &fork in forks.iter().rev() {
        let phone = packet(records[fork]).dst;
        // After the first 180 from that phone, and the one record after it (its
        // copy relayed to the caller).
        let ringing = (fork..records.len())
            .find(|&i| {
                let p = packet(records[i]);
                p.src == phone && p.payload.starts_with(b"SIP/2.0 180")
            })
            .unwrap();
        let record = moved.remove(fork);
        moved.insert(ringing + 1, record);
    }
    assert_ne!(moved, records);
    let mut reordered = Vec::new();
    for r in moved {
        reordered.extend_from_slice(&u32::try_from(r.len()).unwrap().to_be_bytes());
        reordered.extend_from_slice(r);
    }
    let in_order = replay(capture);
    let late = replay(&reordered);
    assert_eq!(late, in_order);
    assert!(late.contains(&ringing("201")), "{late:?}");
}

#[test]
fn request_uris_rsip_cannot_split_still_track() {
    // tel: and IPv6 Request-URIs, and user parameters, as gateways send them.
    for (ruri, ext) in [
        ("tel:+33140000000", "+33140000000"),
        ("sip:201@[::1]:5071", "201"),
        ("sip:+33140000000;npdi@127.0.0.1;user=phone", "+33140000000"),
    ] {
        let call_id = format!("ruri-{ext}@127.0.0.1");
        let invite = sip(
            TRUNK,
            P201,
            &format!(
                "INVITE {ruri} SIP/2.0
                Via: SIP/2.0/UDP [::1]:5090;branch=z9hG4bK-ruri
                From: \"Claire Martin\" <sip:0612345678@127.0.0.1>;tag=t1
                To: <sip:{ext}@127.0.0.1>
                Call-ID: {call_id}
                CSeq: 1 INVITE"
            ),
            "",
        );
        let ringing_reply = sip(
            P201,
            TRUNK,
            &format!(
                "SIP/2.0 180 Ringing
                Via: SIP/2.0/UDP [::1]:5090;branch=z9hG4bK-ruri
                From: \"Claire Martin\" <sip:0612345678@127.0.0.1>;tag=t1
                To: <sip:{ext}@127.0.0.1>;tag=p1
                Call-ID: {call_id}
                CSeq: 1 INVITE"
            ),
            "",
        );
        check(
            &[invite, ringing_reply],
            &call_id,
            &[
                started(&call_id, Direction::Inbound, claire(), ext),
                ringing(ext),
            ],
        );
    }
}

#[test]
fn status_line_without_reason_phrase_is_understood() {
    let f = Flow::new(
        "no-reason@127.0.0.1",
        "\"Claire Martin\"",
        "0612345678",
        "201",
    );
    let mut reply = f.to_caller(486, "Busy Here", Some("p201"));
    let text =
        String::from_utf8(reply.bytes)
            .unwrap()
            .replacen("SIP/2.0 486 Busy Here", "SIP/2.0 486", 1);
    reply.bytes = text.into_bytes();
    check(
        &[f.invite(), reply],
        &f.call_id,
        &[
            started(&f.call_id, Direction::Inbound, claire(), "201"),
            ended(Outcome::Busy, "486 Busy Here"),
        ],
    );
}

/// RFC 4475 §3.1.1.1 "wsinv": a valid INVITE with folded header lines, tabs,
/// odd spacing around colons and separators, compact headers, and an escaped
/// quote in a display name. A valid INVITE starts a call, whatever its legal
/// whitespace.
#[test]
fn rfc_4475_wsinv_torture_invite_starts_a_call() {
    let wsinv = concat!(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n",
        "TO :\r\n",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n",
        "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n",
        "  ;\r\n",
        "  tag = 98asjd8\r\n",
        "MaX-fOrWaRdS: 0068\r\n",
        "Call-ID: wsinv.ndaksdj@192.0.2.1\r\n",
        "Content-Length   : 150\r\n",
        "cseq: 0009\r\n",
        "  INVITE\r\n",
        "Via  : SIP  /   2.0\r\n",
        " /UDP\r\n",
        "    192.0.2.2;branch=390skdjuw\r\n",
        "s :\r\n",
        "NewFangledHeader:   newfangled value\r\n",
        " continued newfangled value\r\n",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n",
        "Content-Type: application/sdp\r\n",
        "Route:\r\n",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n",
        "  branch  =   z9hG4bK9ikj8  ,\r\n",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n",
        " z9hG4bK30239\r\n",
        "m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n",
        "      newvalue ;\r\n",
        "  secondparam ; q = 0.33\r\n",
        "\r\n",
        "v=0\r\n",
        "o=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n",
        "s=-\r\n",
        "c=IN IP4 192.0.2.4\r\n",
        "t=0 0\r\n",
        "m=audio 49217 RTP/AVP 0 12\r\n",
        "m=video 3227 RTP/AVP 31\r\n",
        "a=rtpmap:31 LPC\r\n",
    );
    let mut t = tracker();
    t.handle(
        at(0),
        Some(addr("192.0.2.2:5060")),
        Some(addr("192.0.2.1:5060")),
        wsinv.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("wsinv refused: {e}"));
    let event = t.poll_event().expect("wsinv starts a call");
    assert_eq!(
        event.call_id,
        CallId::from_source_key(Source::Hep, "wsinv.ndaksdj@192.0.2.1")
    );
    let K::CallStarted { caller, callee, .. } = event.kind else {
        panic!("not a call start: {:?}", event.kind);
    };
    assert_eq!(caller.number.as_deref(), Some("jdrosen"));
    assert_eq!(caller.name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(callee.number.as_deref(), Some("vivekg"));
}
