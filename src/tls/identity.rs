//! Who a client certificate names, for `use_identity_as_username`: the subject's CN, else the first DNS or
//! email subject alternative name. Reads the certificate only; whether it is trusted is the verifier's job.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The name a client certificate gives, or `None` when it names nobody usable as an MQTT user name.
///
/// A name with a NUL character is refused, as Mosquitto does: a user name must not contain U+0000
/// [MQTT-1.5.3-2], and a CN with an embedded NUL is a known way to fool C string comparisons.
pub fn certificate_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let common_name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_owned));
    let alternative = || {
        let san = parsed.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(n) | GeneralName::RFC822Name(n) => Some((*n).to_owned()),
            _ => None,
        })
    };
    common_name
        .or_else(alternative)
        .filter(|name| !name.is_empty() && !name.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_common_name_comes_first() {
        let mut params = rcgen::CertificateParams::new(vec!["host.example".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sensor-7");
        assert_eq!(certificate_name(&cert(params)).as_deref(), Some("sensor-7"));
    }

    #[test]
    fn without_a_common_name_the_first_dns_name_is_taken() {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".to_owned(), "b.example".to_owned()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        assert_eq!(
            certificate_name(&cert(params)).as_deref(),
            Some("a.example")
        );
    }

    #[test]
    fn a_certificate_naming_nobody_gives_no_name() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        assert_eq!(certificate_name(&cert(params)), None);
        assert_eq!(certificate_name(&CertificateDer::from(vec![1, 2, 3])), None);
    }
}
