//! The XML answers of sipgate's push API and of Placetel, as Zammad's
//! controllers write them (`app/controllers/integration/sipgate_controller.rb`,
//! `placetel_controller.rb`). sipgate only sends `answer` and `hangup` for a
//! call when the answer to its `newCall` names the URLs to send them to
//! (`onAnswer`, `onHangup`); Placetel needs no URL.

use super::Reply;

const PROLOGUE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// sipgate's answer: `<Response onAnswer=".." onHangup="..">`, with a
/// `<Reject reason="busy"/>` for a blocked caller or a `<Dial>` presenting a
/// caller id.
pub fn sipgate(reply: &Reply, callback_url: &str) -> String {
    let url = escape(callback_url);
    response(&format!(" onAnswer=\"{url}\" onHangup=\"{url}\""), reply)
}

/// Placetel's answer: `<Response/>`, or with a `<Reject>` or a `<Dial>`.
pub fn placetel(reply: &Reply) -> String {
    response("", reply)
}

/// An error, as Zammad's controllers write it: `<Response><Error>…</Error></Response>`.
pub fn error(message: &str) -> String {
    format!(
        "{PROLOGUE}<Response><Error>{}</Error></Response>\n",
        escape(message)
    )
}

fn response(attributes: &str, reply: &Reply) -> String {
    let inner = match reply {
        Reply::Accepted => return format!("{PROLOGUE}<Response{attributes}/>\n"),
        Reply::Reject => "<Reject reason=\"busy\"/>".to_owned(),
        Reply::Dial { caller_id, number } => format!(
            "<Dial callerId=\"{}\"><Number>{}</Number></Dial>",
            escape(caller_id),
            escape(number)
        ),
    };
    format!("{PROLOGUE}<Response{attributes}>{inner}</Response>\n")
}

/// Text safe in XML content and in a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_the_xml_the_providers_read() {
        let url = "https://fiche.example.com/api/v1/sipgate/t0k3n/in";
        assert_eq!(
            sipgate(&Reply::Accepted, url),
            format!("{PROLOGUE}<Response onAnswer=\"{url}\" onHangup=\"{url}\"/>\n")
        );
        assert!(sipgate(&Reply::Reject, url).contains("\"><Reject reason=\"busy\"/></Response>"));
        let dial = Reply::Dial {
            caller_id: "4930777000000".into(),
            number: "4912347114711".into(),
        };
        assert!(placetel(&dial).ends_with(
            "<Response><Dial callerId=\"4930777000000\"><Number>4912347114711</Number></Dial></Response>\n"
        ));
        assert_eq!(
            placetel(&Reply::Accepted),
            format!("{PROLOGUE}<Response/>\n")
        );
        assert!(error("a <b> & \"c\"").contains("<Error>a &lt;b&gt; &amp; &quot;c&quot;</Error>"));
        assert!(
            sipgate(&Reply::Accepted, "http://h/?a=1&b=\"2\"").contains("a=1&amp;b=&quot;2&quot;")
        );
    }
}
