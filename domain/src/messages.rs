//! The texts of the messages the service sends (one-time codes, links, notices), as a table of
//! templates per language. A message is a [`Template`] with its values; [`render`] picks the
//! language from the user's profile (`fr`, `fr-CA` → French; anything else → English, the
//! default) and answers the subject and body. Values are inserted as given: messages are
//! plain text, never HTML, so no value can turn into markup.

use serde::{Deserialize, Serialize};

/// The languages messages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Fr,
}

impl Language {
    /// The language of a BCP 47 tag (a profile's `language`): its primary subtag decides; an
    /// unknown or missing language is English.
    pub fn of_tag(tag: Option<&str>) -> Self {
        let primary = tag.unwrap_or_default().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("fr") {
            Language::Fr
        } else {
            Language::En
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Fr => "fr",
        }
    }
}

/// A message to a user, with the values its text needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template<'a> {
    /// A sign-in code (second factor by email or SMS).
    SignInCode { code: &'a str, minutes: u64 },
    /// A code confirming a step-up or another sensitive action.
    ConfirmationCode { code: &'a str, minutes: u64 },
    /// A code confirming a new email address for the account.
    EmailChangeCode { code: &'a str, minutes: u64 },
    /// To the old address: a change to `masked_new` was asked.
    EmailChangeNotice { masked_new: &'a str },
    /// A code confirming a phone number for SMS codes.
    PhoneCode { code: &'a str, minutes: u64 },
    /// A password-reset code and link.
    PasswordReset { token: &'a str, link: &'a str, minutes: u64 },
    /// The password was changed by a reset.
    PasswordResetNotice,
    /// Confirms the address given at signup.
    VerifyEmail { token: &'a str, link: &'a str, hours: u64 },
    /// The account's erasure is scheduled for `due` (RFC 3339); how to cancel it before then.
    ErasureScheduled { due: &'a str, cancel_path: &'a str },
    /// To a parent: a child under 13 asked for an account; how to consent or refuse.
    ParentalConsent { token: &'a str, deadline: &'a str },
    /// A connected service refused its renewal: the user must connect it again.
    IntegrationNeedsReconnect { service: &'a str },
    /// An invitation to join organization `org`; accepted by the account with this address.
    OrgInvitation { org: &'a str, token: &'a str, deadline: &'a str },
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub language: Language,
}

/// The template's subject and body in `language`.
pub fn render(template: &Template<'_>, language: Language) -> Rendered {
    use Language::{En, Fr};
    use Template::*;
    let (subject, text) = match (template, language) {
        (SignInCode { code, minutes }, En) => (
            "Your sign-in code".to_owned(),
            format!("Your sign-in code is {code}. It expires in {minutes} minutes."),
        ),
        (SignInCode { code, minutes }, Fr) => (
            "Votre code de connexion".to_owned(),
            format!("Votre code de connexion est {code}. Il expire dans {minutes} minutes."),
        ),
        (ConfirmationCode { code, minutes }, En) => (
            "Your confirmation code".to_owned(),
            format!("Your confirmation code is {code}. It expires in {minutes} minutes."),
        ),
        (ConfirmationCode { code, minutes }, Fr) => (
            "Votre code de confirmation".to_owned(),
            format!("Votre code de confirmation est {code}. Il expire dans {minutes} minutes."),
        ),
        (EmailChangeCode { code, minutes }, En) => (
            "Confirm your new email address".to_owned(),
            format!(
                "Your code to confirm this address for your account is {code}. It expires in {minutes} minutes."
            ),
        ),
        (EmailChangeCode { code, minutes }, Fr) => (
            "Confirmez votre nouvelle adresse".to_owned(),
            format!(
                "Votre code pour confirmer cette adresse pour votre compte est {code}. Il expire dans {minutes} minutes."
            ),
        ),
        (EmailChangeNotice { masked_new }, En) => (
            "A change of your email address was requested".to_owned(),
            format!(
                "A change of your account's email to {masked_new} was requested. If it was not you, change your password now."
            ),
        ),
        (EmailChangeNotice { masked_new }, Fr) => (
            "Un changement de votre adresse a été demandé".to_owned(),
            format!(
                "Un changement de l'adresse de votre compte vers {masked_new} a été demandé. Si ce n'était pas vous, changez votre mot de passe maintenant."
            ),
        ),
        (PhoneCode { code, minutes }, En) => (
            "Your phone confirmation code".to_owned(),
            format!("Your code to add this phone to your account is {code}. It expires in {minutes} minutes."),
        ),
        (PhoneCode { code, minutes }, Fr) => (
            "Votre code de confirmation du téléphone".to_owned(),
            format!(
                "Votre code pour ajouter ce téléphone à votre compte est {code}. Il expire dans {minutes} minutes."
            ),
        ),
        (PasswordReset { token, link, minutes }, En) => (
            "Reset your password".to_owned(),
            format!(
                "Someone asked to reset the password of your account. To choose a new one, open {link} \
                 or give this code: {token}\nIt works once and expires in {minutes} minutes. \
                 If it was not you, ignore this message: your password is unchanged."
            ),
        ),
        (PasswordReset { token, link, minutes }, Fr) => (
            "Réinitialisez votre mot de passe".to_owned(),
            format!(
                "Quelqu'un a demandé à réinitialiser le mot de passe de votre compte. Pour en choisir un \
                 nouveau, ouvrez {link} ou donnez ce code : {token}\nIl ne sert qu'une fois et expire dans \
                 {minutes} minutes. Si ce n'était pas vous, ignorez ce message : votre mot de passe n'a pas changé."
            ),
        ),
        (PasswordResetNotice, En) => (
            "Your password was reset".to_owned(),
            "The password of your account was just reset, and every session was ended. If it was not you, \
             reset it again at once and contact support."
                .to_owned(),
        ),
        (PasswordResetNotice, Fr) => (
            "Votre mot de passe a été réinitialisé".to_owned(),
            "Le mot de passe de votre compte vient d'être réinitialisé et toutes les sessions ont été \
             fermées. Si ce n'était pas vous, réinitialisez-le de nouveau tout de suite et contactez le support."
                .to_owned(),
        ),
        (VerifyEmail { token, link, hours }, En) => (
            "Confirm your email address".to_owned(),
            format!(
                "Welcome! To confirm this address for your account, open {link} or give this code: \
                 {token}\nIt expires in {hours} hours."
            ),
        ),
        (ErasureScheduled { due, cancel_path }, En) => (
            "Your account will be erased".to_owned(),
            format!(
                "Your account will be erased on {due}. Until then you can cancel: POST {cancel_path} with \
                 your password. Signing in is not possible meanwhile."
            ),
        ),
        (ErasureScheduled { due, cancel_path }, Fr) => (
            "Votre compte va être effacé".to_owned(),
            format!(
                "Votre compte sera effacé le {due}. D'ici là, vous pouvez annuler : POST {cancel_path} avec \
                 votre mot de passe. La connexion est impossible en attendant."
            ),
        ),
        (ParentalConsent { token, deadline }, En) => (
            "Your child asked to open an account".to_owned(),
            format!(
                "Your child asked to open an account. To consent, send {{\"token\": \"{token}\", \"decision\": \
                 \"grant\"}} to POST /api/v1/auth/parental-consent before {deadline}; \"refuse\" (or no answer) \
                 deletes the account."
            ),
        ),
        (ParentalConsent { token, deadline }, Fr) => (
            "Votre enfant a demandé à ouvrir un compte".to_owned(),
            format!(
                "Votre enfant a demandé à ouvrir un compte. Pour y consentir, envoyez {{\"token\": \"{token}\", \
                 \"decision\": \"grant\"}} à POST /api/v1/auth/parental-consent avant le {deadline} ; \
                 \"refuse\" (ou l'absence de réponse) supprime le compte."
            ),
        ),
        (OrgInvitation { org, token, deadline }, En) => (
            format!("You are invited to join {org}"),
            format!(
                "You are invited to join the organization {org}. Sign in (or sign up) with this address, \
                 then send {{\"token\": \"{token}\"}} to POST /api/v1/invitations/accept before {deadline}. \
                 The invitation works once."
            ),
        ),
        (OrgInvitation { org, token, deadline }, Fr) => (
            format!("Vous êtes invité à rejoindre {org}"),
            format!(
                "Vous êtes invité à rejoindre l'organisation {org}. Connectez-vous (ou créez un compte) avec \
                 cette adresse, puis envoyez {{\"token\": \"{token}\"}} à POST /api/v1/invitations/accept \
                 avant le {deadline}. L'invitation ne sert qu'une fois."
            ),
        ),
        (IntegrationNeedsReconnect { service }, En) => (
            format!("Reconnect {service} to your account"),
            format!(
                "{service} no longer accepts the access you gave it, so your account stopped syncing with it. \
                 To resume, connect {service} again from your account's integrations."
            ),
        ),
        (IntegrationNeedsReconnect { service }, Fr) => (
            format!("Reconnectez {service} à votre compte"),
            format!(
                "{service} n'accepte plus l'accès que vous lui aviez donné : votre compte ne se synchronise plus \
                 avec lui. Pour reprendre, connectez de nouveau {service} depuis les intégrations de votre compte."
            ),
        ),
        (VerifyEmail { token, link, hours }, Fr) => (
            "Confirmez votre adresse".to_owned(),
            format!(
                "Bienvenue ! Pour confirmer cette adresse pour votre compte, ouvrez {link} ou donnez ce \
                 code : {token}\nIl expire dans {hours} heures."
            ),
        ),
    };
    Rendered { subject, text, language }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_primary_subtag_and_defaults_to_english() {
        for (tag, expected) in [
            (Some("fr"), Language::Fr),
            (Some("fr-CA"), Language::Fr),
            (Some("FR_be"), Language::Fr),
            (Some("en-GB"), Language::En),
            (Some("de"), Language::En),
            (Some(""), Language::En),
            (None, Language::En),
        ] {
            assert_eq!(Language::of_tag(tag), expected, "{tag:?}");
        }
    }

    #[test]
    fn every_template_has_both_languages_with_its_values() {
        let templates = [
            Template::SignInCode { code: "123456", minutes: 10 },
            Template::ConfirmationCode { code: "123456", minutes: 10 },
            Template::EmailChangeCode { code: "123456", minutes: 10 },
            Template::EmailChangeNotice { masked_new: "j***@example.com" },
            Template::PhoneCode { code: "123456", minutes: 10 },
            Template::PasswordReset { token: "tok", link: "https://x/reset#tok", minutes: 30 },
            Template::OrgInvitation { org: "Acme", token: "tok", deadline: "2026-12-10T00:00:00Z" },
            Template::PasswordResetNotice,
            Template::VerifyEmail { token: "tok", link: "https://x/verify#tok", hours: 72 },
            Template::ErasureScheduled {
                due: "2026-12-09T10:00:00Z",
                cancel_path: "/api/v1/users/usr_1/erasure/cancel",
            },
            Template::ParentalConsent { token: "tok", deadline: "2026-11-28T10:00:00Z" },
        ];
        for t in &templates {
            let en = render(t, Language::En);
            let fr = render(t, Language::Fr);
            assert_ne!(en.text, fr.text, "{t:?}");
            assert_ne!(en.subject, fr.subject, "{t:?}");
            assert_eq!((en.language, fr.language), (Language::En, Language::Fr));
            for value in ["123456", "j***@example.com", "https://x/reset#tok", "https://x/verify#tok"] {
                let in_template = format!("{t:?}").contains(value);
                assert_eq!(en.text.contains(value), in_template, "{t:?} en {value}");
                assert_eq!(fr.text.contains(value), in_template, "{t:?} fr {value}");
            }
        }
    }

    #[test]
    fn a_sign_in_code_reads_as_before_in_english() {
        let r = render(&Template::SignInCode { code: "042042", minutes: 10 }, Language::En);
        assert_eq!(r.text, "Your sign-in code is 042042. It expires in 10 minutes.");
        let r = render(&Template::SignInCode { code: "042042", minutes: 10 }, Language::Fr);
        assert_eq!(r.text, "Votre code de connexion est 042042. Il expire dans 10 minutes.");
    }
}
