//! SIP messages of the simulated phone system, written as a Kamailio stateful
//! proxy with `siptrace` (`trace_mode=1`) mirrors them: every proxied message
//! twice, as received and as forwarded, Record-Route on every dialog. The
//! flows copy `sip-test-scripts/` and the tracker's golden tests, so the real
//! tracker reads them as it reads a real PBX. No IO here: text in, text out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The simulated PBX (TEST-NET-1 addresses: they only travel inside HEP).
pub const PBX: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 5060);
/// The operator's trunk, where outside callers come from.
pub const TRUNK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 5060);

/// The desk phone of extension `ext` (201 → 192.0.2.201:5060, others on .250).
pub fn phone(ext: &str) -> SocketAddr {
    let last = ext.parse::<u8>().unwrap_or(250);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), 5060)
}

/// One SIP message as the PBX's mirror reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipPacket {
    /// Who sent it.
    pub src: SocketAddr,
    /// Who it was sent to.
    pub dst: SocketAddr,
    /// The message, CRLF line ends, correct Content-Length.
    pub text: String,
}

/// A SIP message from `head` (lines joined by `\n`, without Content-Length)
/// and `body`, with CRLF line ends and a correct Content-Length.
fn message(src: SocketAddr, dst: SocketAddr, head: &str, body: &str) -> SipPacket {
    let body = body.replace('\n', "\r\n");
    let mut text = String::with_capacity(head.len() + body.len() + 64);
    for line in head.lines().map(str::trim).filter(|l| !l.is_empty()) {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    SipPacket { src, dst, text }
}

fn sdp(host: IpAddr, port: u16) -> String {
    format!(
        "v=0\no=- 53655765 2353687637 IN IP4 {host}\ns=-\nc=IN IP4 {host}\nt=0 0\n\
         m=audio {port} RTP/AVP 8 0 101\na=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\n\
         a=rtpmap:101 telephone-event/8000\na=sendrecv\n"
    )
}

/// One in-dialog request on its way through the PBX.
struct Hop<'a> {
    method: &'a str,
    ruri: &'a str,
    from: SocketAddr,
    to: SocketAddr,
    branch: &'a str,
    /// The sender's Via `rport` parameter as the PBX wrote it.
    rport: &'a str,
    /// The headers after Max-Forwards.
    common: &'a str,
}

/// One dialog through the PBX: the caller's INVITE and what the proxy and
/// the phones do with it.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// The SIP Call-ID (Fiche's `source_key`).
    pub call_id: String,
    caller: SocketAddr,
    caller_user: String,
    caller_tag: String,
    from: String,
    to: String,
    request_uri: String,
    branch: String,
    extra: String,
}

impl Dialog {
    /// A call from `number` (with `display`, possibly empty) at the trunk to `callee`.
    pub fn inbound(call_id: &str, display: &str, number: &str, callee: &str) -> Self {
        let display = if display.is_empty() {
            String::new()
        } else {
            format!("\"{}\" ", display.replace(['"', '\\'], ""))
        };
        let caller_tag = format!("as{}", short_hash(call_id));
        Dialog {
            call_id: call_id.to_owned(),
            caller: TRUNK,
            caller_user: number.to_owned(),
            from: format!("{display}<sip:{number}@{}>;tag={caller_tag}", TRUNK.ip()),
            caller_tag,
            to: format!("<sip:{callee}@{}>", PBX.ip()),
            request_uri: format!("sip:{callee}@{}", PBX.ip()),
            branch: format!("z9hG4bK-{}-0", short_hash(call_id)),
            extra: String::new(),
        }
    }

    /// A call whose caller withholds her number: `From` anonymous, the
    /// number only in `P-Asserted-Identity` with `Privacy: id`, as French
    /// operators present a "numéro masqué".
    pub fn withheld(call_id: &str, number: &str, callee: &str) -> Self {
        let mut dialog = Dialog::inbound(call_id, "", "anonymous", callee);
        dialog.from = format!(
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag={}",
            dialog.caller_tag
        );
        dialog
            .with_header(&format!(
                "P-Asserted-Identity: <sip:{number}@{}>",
                TRUNK.ip()
            ))
            .with_header("Privacy: id")
    }

    /// Adds a header line to the INVITE.
    pub fn with_header(mut self, line: &str) -> Self {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    fn record_route(&self) -> String {
        format!(
            "Record-Route: <sip:{};lr;ftag={}>",
            PBX.ip(),
            self.caller_tag
        )
    }

    /// The proxy's branch towards `ext`.
    pub fn proxy_branch(&self, ext: &str) -> String {
        format!("z9hG4bK{}.{ext}", short_hash(&self.call_id))
    }

    /// The To-tag phone `ext` answers with.
    pub fn phone_tag(&self, ext: &str) -> String {
        format!("{ext}-{}", short_hash(&self.call_id))
    }

    /// The caller's INVITE as the PBX received it, and its 100 Trying.
    pub fn invite(&self) -> Vec<SipPacket> {
        let invite = message(
            self.caller,
            PBX,
            &format!(
                "INVITE {ruri} SIP/2.0
                Via: SIP/2.0/UDP {caller};branch={branch}
                Max-Forwards: 70
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: 1 INVITE
                Contact: <sip:{user}@{caller}>
                User-Agent: Fiche demo trunk
                {extra}
                Content-Type: application/sdp",
                ruri = self.request_uri,
                caller = self.caller,
                branch = self.branch,
                from = self.from,
                to = self.to,
                cid = self.call_id,
                user = self.caller_user,
                extra = self.extra,
            ),
            &sdp(self.caller.ip(), 16000),
        );
        vec![invite, self.to_caller(100, "Trying", None)]
    }

    /// The INVITE the PBX forks to extension `ext`'s phone.
    pub fn fork(&self, ext: &str) -> SipPacket {
        let phone = phone(ext);
        message(
            PBX,
            phone,
            &format!(
                "INVITE sip:{ext}@{phone} SIP/2.0
                {rr}
                Via: SIP/2.0/UDP {pbx};branch={kb}
                Via: SIP/2.0/UDP {caller};rport={port};branch={branch}
                Max-Forwards: 69
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: 1 INVITE
                Contact: <sip:{user}@{caller}>
                User-Agent: Fiche demo trunk
                {extra}
                Content-Type: application/sdp",
                rr = self.record_route(),
                pbx = PBX,
                kb = self.proxy_branch(ext),
                caller = self.caller,
                port = self.caller.port(),
                branch = self.branch,
                from = self.from,
                to = self.to,
                cid = self.call_id,
                user = self.caller_user,
                extra = self.extra,
            ),
            &sdp(self.caller.ip(), 16000),
        )
    }

    fn to_with_tag(&self, tag: Option<&str>) -> String {
        match tag {
            Some(tag) => format!("{};tag={tag}", self.to),
            None => self.to.clone(),
        }
    }

    /// Phone `ext`'s answer to the forked INVITE, as the PBX received it.
    pub fn phone_reply(&self, ext: &str, code: u16, reason: &str) -> SipPacket {
        let phone = phone(ext);
        let tag = (code > 100).then(|| self.phone_tag(ext));
        let (content_type, body) = if code == 200 {
            ("Content-Type: application/sdp", sdp(phone.ip(), 20000))
        } else {
            ("", String::new())
        };
        message(
            phone,
            PBX,
            &format!(
                "SIP/2.0 {code} {reason}
                Via: SIP/2.0/UDP {pbx};branch={kb}
                Via: SIP/2.0/UDP {caller};rport={port};received={caller_ip};branch={branch}
                {rr}
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: 1 INVITE
                Contact: <sip:{ext}@{phone}>
                User-Agent: Fiche demo phone {ext}
                {content_type}",
                pbx = PBX,
                kb = self.proxy_branch(ext),
                caller = self.caller,
                port = self.caller.port(),
                caller_ip = self.caller.ip(),
                branch = self.branch,
                rr = self.record_route(),
                from = self.from,
                to = self.to_with_tag(tag.as_deref()),
                cid = self.call_id,
            ),
            &body,
        )
    }

    /// A response the PBX sends to the caller (its own Via removed).
    pub fn to_caller(&self, code: u16, reason: &str, tag: Option<&str>) -> SipPacket {
        let (content_type, body) = if code == 200 {
            ("Content-Type: application/sdp", sdp(PBX.ip(), 20000))
        } else {
            ("", String::new())
        };
        message(
            PBX,
            self.caller,
            &format!(
                "SIP/2.0 {code} {reason}
                Via: SIP/2.0/UDP {caller};rport={port};received={caller_ip};branch={branch}
                {rr}
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: 1 INVITE
                {content_type}",
                caller = self.caller,
                port = self.caller.port(),
                caller_ip = self.caller.ip(),
                branch = self.branch,
                rr = self.record_route(),
                from = self.from,
                to = self.to_with_tag(tag),
                cid = self.call_id,
            ),
            &body,
        )
    }

    /// Phone `ext`'s response, received by the PBX and relayed to the caller.
    pub fn relay(&self, ext: &str, code: u16, reason: &str) -> Vec<SipPacket> {
        let tag = self.phone_tag(ext);
        vec![
            self.phone_reply(ext, code, reason),
            self.to_caller(code, reason, Some(&tag)),
        ]
    }

    /// The caller gives up: her CANCEL and the PBX's 200 to it.
    pub fn cancel(&self) -> Vec<SipPacket> {
        let head = |first: &str| {
            format!(
                "{first}
                Via: SIP/2.0/UDP {caller};branch={branch}
                Max-Forwards: 70
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: 1 CANCEL",
                caller = self.caller,
                branch = self.branch,
                from = self.from,
                to = self.to,
                cid = self.call_id,
            )
        };
        vec![
            message(
                self.caller,
                PBX,
                &head(&format!("CANCEL {} SIP/2.0", self.request_uri)),
                "",
            ),
            message(PBX, self.caller, &head("SIP/2.0 200 canceling"), ""),
        ]
    }

    /// The PBX cancels the branch to phone `ext` (`reason`: a Reason header value).
    pub fn cancel_fork(&self, ext: &str, reason: Option<&str>) -> SipPacket {
        let phone = phone(ext);
        let reason = reason.map(|r| format!("Reason: {r}")).unwrap_or_default();
        message(
            PBX,
            phone,
            &format!(
                "CANCEL sip:{ext}@{phone} SIP/2.0
                Via: SIP/2.0/UDP {pbx};branch={kb}
                Max-Forwards: 70
                From: {from}
                To: {to}
                Call-ID: {cid}
                CSeq: 1 CANCEL
                {reason}",
                pbx = PBX,
                kb = self.proxy_branch(ext),
                from = self.from,
                to = self.to,
                cid = self.call_id,
            ),
            "",
        )
    }

    /// An in-dialog request from the caller to phone `ext` (which answered):
    /// as the PBX received it and as it forwarded it.
    pub fn caller_request(
        &self,
        method: &str,
        cseq: u32,
        ext: &str,
        extra: &str,
    ) -> Vec<SipPacket> {
        let phone = phone(ext);
        let branch = format!("z9hG4bK-{}-{method}{cseq}", short_hash(&self.call_id));
        let common = format!(
            "From: {from}
            To: {to};tag={tag}
            Call-ID: {cid}
            CSeq: {cseq} {method}
            Contact: <sip:{user}@{caller}>
            {extra}",
            from = self.from,
            to = self.to,
            tag = self.phone_tag(ext),
            cid = self.call_id,
            user = self.caller_user,
            caller = self.caller,
        );
        self.through_proxy(Hop {
            method,
            ruri: &format!("sip:{ext}@{phone}"),
            from: self.caller,
            to: phone,
            branch: &branch,
            rport: &format!("rport={}", self.caller.port()),
            common: &common,
        })
    }

    /// An in-dialog request from phone `ext` (which answered) to the caller.
    pub fn callee_request(
        &self,
        method: &str,
        cseq: u32,
        ext: &str,
        extra: &str,
    ) -> Vec<SipPacket> {
        let phone = phone(ext);
        let branch = format!("z9hG4bK-{ext}-{}-{method}{cseq}", short_hash(&self.call_id));
        let common = format!(
            "From: {to};tag={tag}
            To: {from}
            Call-ID: {cid}
            CSeq: {cseq} {method}
            Contact: <sip:{ext}@{phone}>
            {extra}",
            from = self.from,
            to = self.to,
            tag = self.phone_tag(ext),
            cid = self.call_id,
        );
        self.through_proxy(Hop {
            method,
            ruri: &format!("sip:{}@{}", self.caller_user, self.caller),
            from: phone,
            to: self.caller,
            branch: &branch,
            rport: "rport",
            common: &common,
        })
    }

    /// An in-dialog request as the PBX received it from `hop.from` and as it
    /// forwarded it to `hop.to` (its own Via on top, the sender's with `rport`).
    fn through_proxy(&self, hop: Hop<'_>) -> Vec<SipPacket> {
        let Hop {
            method,
            ruri,
            from,
            to,
            branch,
            rport,
            common,
        } = hop;
        let received = format!(
            "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {from};branch={branch}\n\
             Route: <sip:{pbx_ip};lr;ftag={ftag}>\nMax-Forwards: 70\n{common}",
            pbx_ip = PBX.ip(),
            ftag = self.caller_tag,
        );
        let forwarded = format!(
            "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {PBX};branch={branch}.k\n\
             Via: SIP/2.0/UDP {from};{rport};branch={branch}\nMax-Forwards: 69\n{common}"
        );
        vec![
            message(from, PBX, &received, ""),
            message(PBX, to, &forwarded, ""),
        ]
    }

    /// The 200 OK of an in-dialog request, from `from` to the PBX.
    pub fn ok_to(&self, method: &str, cseq: u32, ext: &str, from: SocketAddr) -> SipPacket {
        message(
            from,
            PBX,
            &format!(
                "SIP/2.0 200 OK
                Via: SIP/2.0/UDP {pbx};branch=z9hG4bK-ok-{method}{cseq}
                From: {from_header}
                To: {to};tag={tag}
                Call-ID: {cid}
                CSeq: {cseq} {method}",
                pbx = PBX,
                from_header = self.from,
                to = self.to,
                tag = self.phone_tag(ext),
                cid = self.call_id,
            ),
            "",
        )
    }
}

/// A short stable hex digest of `text`, for tags and branches.
fn short_hash(text: &str) -> String {
    // FNV-1a: stable across runs and platforms, no dependency; uniqueness
    // only matters within one Call-ID.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash >> 32)
}
