//! The SMTP server (aiosmtpd) does what the email tests rely on, spoken to
//! over a raw socket: a login is required, only the one password logs in,
//! the two special recipients get 451 and 550, and what it accepts is read
//! back with its headers and MIME parts decoded.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;

use base64::Engine as _;
use uncensored_test_servers::{
    SMTP_PASSWORD, SMTP_PERMANENT_FAILURE, SMTP_TRANSIENT_FAILURE, SMTP_USER,
};

struct Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Session {
    fn open(address: &str) -> Self {
        let stream = TcpStream::connect(address).unwrap();
        let mut session = Session {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert_eq!(session.reply(), 220);
        assert_eq!(session.command("EHLO tests.local"), 250);
        session
    }

    /// The code of the next (possibly multi-line) reply.
    fn reply(&mut self) -> u16 {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            assert!(line.len() >= 4, "a short reply: {line:?}");
            if line.as_bytes()[3] != b'-' {
                return line[..3].parse().unwrap();
            }
        }
    }

    fn command(&mut self, command: &str) -> u16 {
        write!(self.writer, "{command}\r\n").unwrap();
        self.reply()
    }

    fn login(&mut self, user: &str, password: &str) -> u16 {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.command(&format!("AUTH PLAIN {token}"))
    }
}

#[test]
fn smtp_requires_the_login_refuses_the_special_recipients_and_keeps_what_it_accepts() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    let mut session = Session::open(&server.address());
    assert_eq!(session.command("MAIL FROM:<me@example.com>"), 530);
    assert_eq!(session.login(SMTP_USER, "wrong"), 535);
    assert_eq!(session.login(SMTP_USER, SMTP_PASSWORD), 235);
    assert_eq!(session.command("MAIL FROM:<me@example.com>"), 250);
    assert_eq!(
        session.command(&format!("RCPT TO:<{SMTP_TRANSIENT_FAILURE}>")),
        451
    );
    assert_eq!(
        session.command(&format!("RCPT TO:<{SMTP_PERMANENT_FAILURE}>")),
        550
    );
    assert_eq!(session.command("RCPT TO:<a@example.com>"), 250);
    assert_eq!(session.command("DATA"), 354);
    let message = concat!(
        "From: me@example.com\r\n",
        "To: a@example.com\r\n",
        "Subject: =?utf-8?b?w6l0w6k=?= and\r\n",
        " =?utf-8?q?caf=C3=A9?=\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n",
        "\r\n",
        "--XYZ\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
        "caf=C3=A9 au =\r\n",
        "lait\r\n",
        "--XYZ\r\n",
        "Content-Type: image/jpeg\r\n",
        "Content-Disposition: attachment; filename=\"x.jpg\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "\r\n",
        "/9j/\r\n",
        "--XYZ--\r\n",
        ".\r\n"
    );
    write!(session.writer, "{message}").unwrap();
    assert_eq!(session.reply(), 250);
    assert_eq!(session.command("QUIT"), 221);

    let messages = server.wait_for_messages(1);
    let received = &messages[0];
    assert_eq!(received.mail_from, "me@example.com");
    assert_eq!(received.rcpt_tos, ["a@example.com"]);
    assert_eq!(received.login.as_deref(), Some(SMTP_USER));
    assert_eq!(received.header("subject").as_deref(), Some("été and café"));
    let parts = received.parts();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].text(), "café au lait");
    assert_eq!(parts[1].content_type, "image/jpeg");
    assert_eq!(parts[1].filename.as_deref(), Some("x.jpg"));
    assert_eq!(parts[1].body, [0xff, 0xd8, 0xff]);
}
