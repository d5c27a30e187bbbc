//! Typed AMI events: the closed set the call tracker understands.
//!
//! Conversion happens in one place, [`AmiEvent::from_message`]; it looks at the
//! event name first, so noise (`VarSet`, `Newexten`, `RTCPSent`, …) costs one
//! string compare and no allocation. Events borrow their text from the
//! [`AmiMessage`] they come from.

use super::frame::AmiMessage;

/// The standard channel fields carried by call events, read with a key prefix
/// (`""`, `"Dest"`, `"Transferer"`, `"LocalOne"`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelSnapshot<'a> {
    /// Channel name, e.g. `PJSIP/201-00000012`.
    pub channel: &'a str,
    /// `ChannelState` number (4 ring, 5 ringing, 6 up).
    pub state: Option<u8>,
    /// Caller id number of this leg.
    pub caller_id_num: &'a str,
    /// Caller id name of this leg (untrusted).
    pub caller_id_name: &'a str,
    /// Who this leg is connected to: number.
    pub connected_line_num: &'a str,
    /// Who this leg is connected to: name (untrusted).
    pub connected_line_name: &'a str,
    /// Dialplan context.
    pub context: &'a str,
    /// Dialplan extension (on a new inbound leg: the dialled number).
    pub exten: &'a str,
    /// Stable id of the channel.
    pub unique_id: &'a str,
    /// Id of the oldest channel of the call: Fiche's call key.
    pub linked_id: &'a str,
}

impl<'a> ChannelSnapshot<'a> {
    /// Reads the snapshot whose keys start with `prefix`; `None` without a `…Uniqueid`.
    pub fn read(message: &'a AmiMessage, prefix: &str) -> Option<Self> {
        let mut snapshot = ChannelSnapshot::default();
        let mut found = false;
        for (key, value) in message.iter() {
            let Some(rest) = strip_prefix_ignore_case(key, prefix) else {
                continue;
            };
            // Every snapshot key starts with C, E, U or L: skip the rest cheaply.
            if !matches!(
                rest.as_bytes().first(),
                Some(b'C' | b'E' | b'U' | b'L' | b'c' | b'e' | b'u' | b'l')
            ) {
                continue;
            }
            match rest.len() {
                7 if rest.eq_ignore_ascii_case("Channel") => snapshot.channel = value,
                12 if rest.eq_ignore_ascii_case("ChannelState") => {
                    snapshot.state = value.trim().parse().ok();
                }
                11 if rest.eq_ignore_ascii_case("CallerIDNum") => snapshot.caller_id_num = value,
                12 if rest.eq_ignore_ascii_case("CallerIDName") => snapshot.caller_id_name = value,
                16 if rest.eq_ignore_ascii_case("ConnectedLineNum") => {
                    snapshot.connected_line_num = value;
                }
                17 if rest.eq_ignore_ascii_case("ConnectedLineName") => {
                    snapshot.connected_line_name = value;
                }
                7 if rest.eq_ignore_ascii_case("Context") => snapshot.context = value,
                5 if rest.eq_ignore_ascii_case("Exten") => snapshot.exten = value,
                8 if rest.eq_ignore_ascii_case("Uniqueid") => {
                    snapshot.unique_id = value;
                    found = true;
                }
                8 if rest.eq_ignore_ascii_case("Linkedid") => snapshot.linked_id = value,
                _ => {}
            }
        }
        if !found || snapshot.unique_id.is_empty() {
            return None;
        }
        if snapshot.linked_id.is_empty() {
            snapshot.linked_id = snapshot.unique_id;
        }
        Some(snapshot)
    }
}

fn strip_prefix_ignore_case<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    if key.len() < prefix.len() || !key.is_char_boundary(prefix.len()) {
        return None;
    }
    let (head, rest) = key.split_at(prefix.len());
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// Q.850 hangup cause of a `Hangup` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HangupCause<'a> {
    /// The cause number (16 normal clearing, 17 busy, …); 0 when absent.
    pub code: u16,
    /// `Cause-txt`.
    pub text: &'a str,
}

/// One AMI event the call tracker understands, or [`AmiEvent::Other`].
// Events live one at a time on the stack while the tracker reads them; boxing
// the large transfer variants would cost an allocation per event instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AmiEvent<'a> {
    /// First event of every channel.
    Newchannel(ChannelSnapshot<'a>),
    /// Channel state changed.
    Newstate(ChannelSnapshot<'a>),
    /// Caller id changed; `presentation` is the `CID-CallingPres` number.
    NewCallerid {
        /// The channel.
        channel: ChannelSnapshot<'a>,
        /// Calling presentation (32 and above: restricted).
        presentation: Option<u8>,
    },
    /// Connected line changed.
    NewConnectedLine(ChannelSnapshot<'a>),
    /// A dial attempt from `caller` (absent on originate) to `dest`.
    DialBegin {
        /// The dialling channel.
        caller: Option<ChannelSnapshot<'a>>,
        /// The dialled channel.
        dest: ChannelSnapshot<'a>,
        /// What was dialled.
        dial_string: &'a str,
    },
    /// Progress of a dial (`RINGING`, `PROCEEDING`, `PROGRESS`).
    DialState {
        /// The dialled channel.
        dest: ChannelSnapshot<'a>,
        /// The status.
        status: &'a str,
    },
    /// Final result of a dial attempt.
    DialEnd {
        /// The dialling channel.
        caller: Option<ChannelSnapshot<'a>>,
        /// The dialled channel.
        dest: ChannelSnapshot<'a>,
        /// `ANSWER`, `BUSY`, `NOANSWER`, `CANCEL`, `CONGESTION`, `CHANUNAVAIL`, …
        status: &'a str,
    },
    /// A channel entered a bridge.
    BridgeEnter {
        /// The channel.
        channel: ChannelSnapshot<'a>,
        /// The bridge.
        bridge_id: &'a str,
    },
    /// A channel left a bridge.
    BridgeLeave {
        /// The channel.
        channel: ChannelSnapshot<'a>,
        /// The bridge.
        bridge_id: &'a str,
    },
    /// The channel put its peer on hold.
    Hold(ChannelSnapshot<'a>),
    /// The channel took its peer off hold.
    Unhold(ChannelSnapshot<'a>),
    /// The channel is gone.
    Hangup {
        /// The channel.
        channel: ChannelSnapshot<'a>,
        /// Why.
        cause: HangupCause<'a>,
    },
    /// A blind transfer.
    BlindTransfer {
        /// `Success`, `Fail`, …
        result: &'a str,
        /// Who transferred.
        transferer: Option<ChannelSnapshot<'a>>,
        /// Who is sent on.
        transferee: Option<ChannelSnapshot<'a>>,
        /// The destination extension.
        extension: &'a str,
    },
    /// An attended transfer.
    AttendedTransfer {
        /// `Success`, `Fail`, …
        result: &'a str,
        /// The transferer's leg in the first call.
        orig_transferer: Option<ChannelSnapshot<'a>>,
        /// The transferer's leg in the consultation call.
        second_transferer: Option<ChannelSnapshot<'a>>,
        /// The party transferred (newer versions).
        transferee: Option<ChannelSnapshot<'a>>,
        /// The transfer target (newer versions).
        transfer_target: Option<ChannelSnapshot<'a>>,
        /// The bridge of the first call (transferer and transferee).
        orig_bridge: &'a str,
        /// The bridge of the consultation call (transferer and target), empty
        /// when the target still rang (a blonde transfer).
        second_bridge: &'a str,
    },
    /// The two halves of a Local channel were connected.
    LocalBridge {
        /// The `;1` half.
        local_one: Option<ChannelSnapshot<'a>>,
        /// The `;2` half.
        local_two: Option<ChannelSnapshot<'a>>,
    },
    /// A caller entered a queue.
    QueueCallerJoin {
        /// The caller.
        channel: ChannelSnapshot<'a>,
        /// The queue.
        queue: &'a str,
    },
    /// A caller left a queue (answered or moved on).
    QueueCallerLeave {
        /// The caller.
        channel: ChannelSnapshot<'a>,
        /// The queue.
        queue: &'a str,
    },
    /// A caller hung up while waiting in a queue.
    QueueCallerAbandon {
        /// The caller.
        channel: ChannelSnapshot<'a>,
        /// The queue.
        queue: &'a str,
        /// Seconds waited.
        hold_time: Option<u32>,
    },
    /// A queue member is rung.
    AgentCalled(AgentFields<'a>),
    /// A queue member answered.
    AgentConnect(AgentFields<'a>),
    /// A queue member finished a call.
    AgentComplete(AgentFields<'a>),
    /// A queue member did not answer in time.
    AgentRingNoAnswer(AgentFields<'a>),
    /// One live channel, in reply to `CoreShowChannels`.
    CoreShowChannel {
        /// The channel.
        channel: ChannelSnapshot<'a>,
        /// The bridge it is in, if any.
        bridge_id: &'a str,
        /// How long it has lived, `HH:MM:SS`.
        duration: &'a str,
        /// The list this item belongs to.
        action_id: &'a str,
    },
    /// End of the `CoreShowChannels` list.
    CoreShowChannelsComplete {
        /// The list this ends.
        action_id: &'a str,
    },
    /// Anything else: not needed for call tracking.
    Other(&'a str),
}

/// Fields of the `Agent*` queue events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentFields<'a> {
    /// The caller's channel.
    pub caller: Option<ChannelSnapshot<'a>>,
    /// The member's outbound channel (a device or a `Local/…;1` half).
    pub dest: Option<ChannelSnapshot<'a>>,
    /// The queue.
    pub queue: &'a str,
    /// The member's name.
    pub member_name: &'a str,
    /// The member's interface, e.g. `PJSIP/201` or `Local/201@from-queue/n`.
    pub interface: &'a str,
}

impl<'a> AmiEvent<'a> {
    /// Types one message. Messages that are not events, and events without
    /// the fields they need, become [`AmiEvent::Other`].
    pub fn from_message(message: &'a AmiMessage) -> AmiEvent<'a> {
        let Some(name) = message.event() else {
            return AmiEvent::Other("");
        };
        Self::typed(name, message).unwrap_or(AmiEvent::Other(name))
    }

    fn typed(name: &'a str, m: &'a AmiMessage) -> Option<AmiEvent<'a>> {
        let field = |key: &str| m.get(key).unwrap_or_default();
        let snap = || ChannelSnapshot::read(m, "");
        let event = match name {
            "Newchannel" => AmiEvent::Newchannel(snap()?),
            "Newstate" => AmiEvent::Newstate(snap()?),
            "NewCallerid" => AmiEvent::NewCallerid {
                channel: snap()?,
                presentation: field("CID-CallingPres")
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok()),
            },
            "NewConnectedLine" => AmiEvent::NewConnectedLine(snap()?),
            "DialBegin" => AmiEvent::DialBegin {
                caller: snap(),
                dest: ChannelSnapshot::read(m, "Dest")?,
                dial_string: field("DialString"),
            },
            // Asterisk 1.8–11: one `Dial` event with a `SubEvent`, the
            // destination named `Destination`. Its `End` names no destination;
            // the legs' own `Hangup` causes tell the same.
            "Dial" if field("SubEvent").eq_ignore_ascii_case("Begin") => {
                let mut dest = ChannelSnapshot::read(m, "Dest")?;
                if dest.channel.is_empty() {
                    dest.channel = field("Destination");
                }
                AmiEvent::DialBegin {
                    caller: snap(),
                    dest,
                    dial_string: m
                        .get("DialString")
                        .or(m.get("Dialstring"))
                        .unwrap_or_default(),
                }
            }
            "DialState" => AmiEvent::DialState {
                dest: ChannelSnapshot::read(m, "Dest")?,
                status: field("DialStatus"),
            },
            "DialEnd" => AmiEvent::DialEnd {
                caller: snap(),
                dest: ChannelSnapshot::read(m, "Dest")?,
                status: field("DialStatus"),
            },
            "BridgeEnter" => AmiEvent::BridgeEnter {
                channel: snap()?,
                bridge_id: field("BridgeUniqueid"),
            },
            "BridgeLeave" => AmiEvent::BridgeLeave {
                channel: snap()?,
                bridge_id: field("BridgeUniqueid"),
            },
            "Hold" => AmiEvent::Hold(snap()?),
            "Unhold" => AmiEvent::Unhold(snap()?),
            "Hangup" => AmiEvent::Hangup {
                channel: snap()?,
                cause: HangupCause {
                    code: field("Cause").trim().parse().unwrap_or(0),
                    text: field("Cause-txt"),
                },
            },
            "BlindTransfer" => AmiEvent::BlindTransfer {
                result: field("Result"),
                transferer: ChannelSnapshot::read(m, "Transferer"),
                transferee: ChannelSnapshot::read(m, "Transferee"),
                extension: field("Extension"),
            },
            "AttendedTransfer" => AmiEvent::AttendedTransfer {
                result: field("Result"),
                orig_transferer: ChannelSnapshot::read(m, "OrigTransferer"),
                second_transferer: ChannelSnapshot::read(m, "SecondTransferer"),
                transferee: ChannelSnapshot::read(m, "Transferee"),
                transfer_target: ChannelSnapshot::read(m, "TransferTarget"),
                orig_bridge: field("OrigBridgeUniqueid"),
                second_bridge: field("SecondBridgeUniqueid"),
            },
            "LocalBridge" => AmiEvent::LocalBridge {
                local_one: ChannelSnapshot::read(m, "LocalOne"),
                local_two: ChannelSnapshot::read(m, "LocalTwo"),
            },
            "QueueCallerJoin" => AmiEvent::QueueCallerJoin {
                channel: snap()?,
                queue: field("Queue"),
            },
            "QueueCallerLeave" => AmiEvent::QueueCallerLeave {
                channel: snap()?,
                queue: field("Queue"),
            },
            "QueueCallerAbandon" => AmiEvent::QueueCallerAbandon {
                channel: snap()?,
                queue: field("Queue"),
                hold_time: field("HoldTime").trim().parse().ok(),
            },
            "AgentCalled" => AmiEvent::AgentCalled(AgentFields::read(m)),
            "AgentConnect" => AmiEvent::AgentConnect(AgentFields::read(m)),
            "AgentComplete" => AmiEvent::AgentComplete(AgentFields::read(m)),
            "AgentRingNoAnswer" => AmiEvent::AgentRingNoAnswer(AgentFields::read(m)),
            "CoreShowChannel" => AmiEvent::CoreShowChannel {
                channel: snap()?,
                bridge_id: field("BridgeId"),
                duration: field("Duration"),
                action_id: field("ActionID"),
            },
            "CoreShowChannelsComplete" => AmiEvent::CoreShowChannelsComplete {
                action_id: field("ActionID"),
            },
            _ => return None,
        };
        Some(event)
    }
}

impl<'a> AgentFields<'a> {
    fn read(m: &'a AmiMessage) -> Self {
        AgentFields {
            caller: ChannelSnapshot::read(m, ""),
            dest: ChannelSnapshot::read(m, "Dest"),
            queue: m.get("Queue").unwrap_or_default(),
            member_name: m.get("MemberName").unwrap_or_default(),
            interface: m.get("Interface").unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_begin_reads_both_snapshots() {
        let m = AmiMessage::from_fields(&[
            ("Event", "DialBegin"),
            ("Channel", "PJSIP/ovh-00000001"),
            ("ChannelState", "4"),
            ("CallerIDNum", "0612345678"),
            ("Uniqueid", "1.1"),
            ("Linkedid", "1.1"),
            ("DestChannel", "PJSIP/201-00000002"),
            ("DestChannelState", "0"),
            ("DestUniqueid", "1.2"),
            ("DestLinkedid", "1.1"),
            ("DialString", "201"),
        ]);
        let AmiEvent::DialBegin {
            caller,
            dest,
            dial_string,
        } = AmiEvent::from_message(&m)
        else {
            panic!("not a DialBegin");
        };
        assert_eq!(caller.map(|c| c.channel), Some("PJSIP/ovh-00000001"));
        assert_eq!(caller.map(|c| c.state), Some(Some(4)));
        assert_eq!(dest.channel, "PJSIP/201-00000002");
        assert_eq!(dest.unique_id, "1.2");
        assert_eq!(dial_string, "201");
    }

    #[test]
    fn an_asterisk_11_dial_begin_is_a_dial_begin() {
        let m = AmiMessage::from_fields(&[
            ("Event", "Dial"),
            ("SubEvent", "Begin"),
            ("Channel", "SIP/150010002-00000077"),
            ("UniqueID", "1.239"),
            ("Destination", "Local/ID7@route-0000003b;1"),
            ("DestUniqueID", "1.240"),
            ("Dialstring", "ID7@route"),
        ]);
        let AmiEvent::DialBegin {
            caller,
            dest,
            dial_string,
        } = AmiEvent::from_message(&m)
        else {
            panic!("not a DialBegin");
        };
        assert_eq!(caller.map(|c| c.unique_id), Some("1.239"));
        assert_eq!(caller.map(|c| c.linked_id), Some("1.239"));
        assert_eq!(dest.channel, "Local/ID7@route-0000003b;1");
        assert_eq!(dest.unique_id, "1.240");
        assert_eq!(dial_string, "ID7@route");
        let end = AmiMessage::from_fields(&[("Event", "Dial"), ("SubEvent", "End")]);
        assert_eq!(AmiEvent::from_message(&end), AmiEvent::Other("Dial"));
    }

    #[test]
    fn noise_and_incomplete_events_are_other() {
        let m = AmiMessage::from_fields(&[("Event", "VarSet"), ("Uniqueid", "1.1")]);
        assert_eq!(AmiEvent::from_message(&m), AmiEvent::Other("VarSet"));
        let m = AmiMessage::from_fields(&[("Event", "Hangup"), ("Channel", "PJSIP/1-1")]);
        assert_eq!(AmiEvent::from_message(&m), AmiEvent::Other("Hangup"));
        let m = AmiMessage::from_fields(&[("Response", "Success")]);
        assert_eq!(AmiEvent::from_message(&m), AmiEvent::Other(""));
    }
}
