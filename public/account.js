// The account page: sign-in (password then a second factor, or a passkey), the profile and
// tier, passkeys (add, rename, remove), TOTP enrolment, sessions and security events. The
// access token stays in this script's memory only; every call goes to this origin's API.
// WebAuthn runs through the vendored @simplewebauthn/browser (window.SimpleWebAuthnBrowser).
'use strict';

(() => {
  const T = {
    en: {
      signin_title: 'Sign in', email: 'Email', password: 'Password', signin: 'Sign in', or: 'or',
      signin_passkey: 'Sign in with a passkey', signout: 'Sign out', mfa_title: 'Second factor',
      mfa_help: 'Confirm it is you with one of your factors.', mfa_passkey: 'Use my passkey or security key',
      method: 'Method', send_code: 'Send me a code', code: 'Code', confirm: 'Confirm',
      profile_title: 'Your account', tier: 'Tier', user_id: 'Account id',
      passkeys_title: 'Passkeys and security keys',
      passkeys_help: 'A passkey signs you in with your fingerprint, face or device PIN. A security key is a second factor you plug in.',
      passkeys_empty: 'No passkey yet.', label: 'Name', current_password: 'Current password',
      add_passkey: 'Add a passkey', add_security_key: 'Add a security key',
      stepup_help: 'Removing a factor needs a fresh proof: your password and a passkey.',
      confirm_remove: 'Confirm and remove', cancel: 'Cancel', totp_title: 'Authenticator app',
      totp_enrol: 'Set up an authenticator app', totp_scan: 'Scan this code with your app, then enter the code it shows.',
      recovery_help: 'Keep these recovery codes somewhere safe: each works once.',
      sessions_title: 'Sessions', events_title: 'Security events', rename: 'Rename', remove: 'Remove',
      end: 'End', this_device: 'this device', passkey: 'Passkey', security_key: 'Security key',
      synced: 'synced', added: 'added', last_used: 'last used', never: 'never',
      signed_in: 'Signed in.', passkey_added: 'Passkey added.', passkey_removed: 'Passkey removed.',
      renamed: 'Renamed.', new_name: 'New name', totp_done: 'Authenticator app enrolled.',
      session_ended: 'Session ended.', signed_out: 'Signed out.', working: 'Working…',
      no_webauthn: 'This browser cannot use passkeys here.',
      ev_login_success: 'Signed in', ev_passkey_login: 'Signed in with a passkey', ev_mfa_success: 'Second factor confirmed',
      ev_mfa_enrolled: 'Factor added', ev_mfa_removed: 'Factor removed', ev_step_up: 'Identity confirmed again',
      ev_passkey_counter_regressed: 'Passkey refused: possible clone', ev_passkey_backup_eligibility_changed: 'Passkey refused: its backup flag changed',
      ev_passkey_refused_model: 'Authenticator model refused', ev_login_failure: 'Failed sign-in', ev_mfa_failure: 'Wrong second factor',
      ev_risk_assessed: 'Sign-in risk assessed', ev_mfa_challenge: 'Second factor asked', ev_session_evicted: 'Session ended (limit)',
      ev_mfa_enrolment_started: 'Authenticator app setup started',
      m_totp: 'Authenticator app', m_sms: 'Text message', m_email: 'Email code', m_recovery_code: 'Recovery code',
    },
    fr: {
      signin_title: 'Connexion', email: 'E-mail', password: 'Mot de passe', signin: 'Se connecter', or: 'ou',
      signin_passkey: 'Se connecter avec une clé d’accès', signout: 'Se déconnecter', mfa_title: 'Second facteur',
      mfa_help: 'Confirmez votre identité avec l’un de vos facteurs.', mfa_passkey: 'Utiliser ma clé d’accès ou ma clé de sécurité',
      method: 'Méthode', send_code: 'M’envoyer un code', code: 'Code', confirm: 'Confirmer',
      profile_title: 'Votre compte', tier: 'Offre', user_id: 'Identifiant du compte',
      passkeys_title: 'Clés d’accès et clés de sécurité',
      passkeys_help: 'Une clé d’accès vous connecte avec votre empreinte, votre visage ou le code de l’appareil. Une clé de sécurité est un second facteur à brancher.',
      passkeys_empty: 'Aucune clé d’accès pour l’instant.', label: 'Nom', current_password: 'Mot de passe actuel',
      add_passkey: 'Ajouter une clé d’accès', add_security_key: 'Ajouter une clé de sécurité',
      stepup_help: 'Retirer un facteur demande une preuve récente : votre mot de passe et une clé d’accès.',
      confirm_remove: 'Confirmer et retirer', cancel: 'Annuler', totp_title: 'Application d’authentification',
      totp_enrol: 'Configurer une application d’authentification', totp_scan: 'Scannez ce code avec votre application, puis saisissez le code affiché.',
      recovery_help: 'Gardez ces codes de secours en lieu sûr : chacun ne sert qu’une fois.',
      sessions_title: 'Sessions', events_title: 'Événements de sécurité', rename: 'Renommer', remove: 'Retirer',
      end: 'Terminer', this_device: 'cet appareil', passkey: 'Clé d’accès', security_key: 'Clé de sécurité',
      synced: 'synchronisée', added: 'ajoutée le', last_used: 'dernière utilisation', never: 'jamais',
      signed_in: 'Connecté.', passkey_added: 'Clé d’accès ajoutée.', passkey_removed: 'Clé d’accès retirée.',
      renamed: 'Renommée.', new_name: 'Nouveau nom', totp_done: 'Application d’authentification enregistrée.',
      session_ended: 'Session terminée.', signed_out: 'Déconnecté.', working: 'Un instant…',
      no_webauthn: 'Ce navigateur ne peut pas utiliser de clé d’accès ici.',
      ev_login_success: 'Connexion', ev_passkey_login: 'Connexion avec une clé d’accès', ev_mfa_success: 'Second facteur confirmé',
      ev_mfa_enrolled: 'Facteur ajouté', ev_mfa_removed: 'Facteur retiré', ev_step_up: 'Identité confirmée à nouveau',
      ev_passkey_counter_regressed: 'Clé d’accès refusée : clone possible', ev_passkey_backup_eligibility_changed: 'Clé d’accès refusée : son indicateur de sauvegarde a changé',
      ev_passkey_refused_model: 'Modèle d’authentificateur refusé', ev_login_failure: 'Échec de connexion', ev_mfa_failure: 'Second facteur erroné',
      ev_risk_assessed: 'Risque de connexion évalué', ev_mfa_challenge: 'Second facteur demandé', ev_session_evicted: 'Session terminée (limite)',
      ev_mfa_enrolment_started: 'Configuration d’application commencée',
      m_totp: 'Application d’authentification', m_sms: 'SMS', m_email: 'Code par e-mail', m_recovery_code: 'Code de secours',
      'pb_bad-request': 'La requête est mal formée.', 'pb_validation-failed': 'Un champ n’est pas valide.',
      pb_unauthenticated: 'Identification refusée : vérifiez vos informations.', pb_forbidden: 'Cette action n’est pas autorisée.',
      'pb_not-found': 'Introuvable.', pb_conflict: 'Cette demande entre en conflit avec l’état actuel.',
      'pb_precondition-failed': 'La ressource a changé entre-temps : rechargez la page.',
      'pb_payload-too-large': 'La demande est trop volumineuse.', 'pb_rate-limited': 'Trop de tentatives : réessayez plus tard.',
      'pb_mfa-required': 'Un second facteur est nécessaire.', 'pb_login-refused': 'Connexion refusée : elle paraît trop risquée.',
      'pb_step-up-required': 'Cette modification demande une preuve récente de votre identité.',
      pb_overloaded: 'Le service est saturé : réessayez dans un instant.', 'pb_origin-unavailable': 'Le service est indisponible.',
      'pb_bad-gateway': 'Le service a mal répondu.', pb_internal: 'Erreur interne.', pb_gone: 'Ce lien a expiré.',
      'pb_erasure-pending': 'La suppression de ce compte est programmée.', 'pb_entitlement-exceeded': 'La limite de votre offre est atteinte.',
    },
  };
  let lang = (navigator.language || 'en').toLowerCase().startsWith('fr') ? 'fr' : 'en';
  const t = (key) => T[lang][key] || T.en[key] || key;
  const $ = (id) => document.getElementById(id);
  const W = () => window.SimpleWebAuthnBrowser;

  // What the page holds, in memory only.
  const state = { token: null, userId: null, challenge: null, pendingRemoval: null, conditional: null };

  function translate() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $('lang').textContent = lang === 'fr' ? 'EN' : 'FR';
  }

  function say(message, kind) {
    const el = $('status');
    el.textContent = message || '';
    el.className = kind || '';
  }

  // What a problem says to the person reading the page. The API's `detail` is English; in
  // another language the page says it in its own words: the refusal's own reason when the
  // problem names one (a passkey's security event), else what its type means.
  function problemText(problem, status) {
    const p = problem || {};
    if (lang !== 'en') {
      const slug = String(p.type || '').split(':').pop();
      const own = (p.reason && T[lang][`ev_${p.reason}`]) || T[lang][`pb_${slug}`];
      if (own) return own;
    }
    return p.detail || p.title || `HTTP ${status}`;
  }

  class ApiError extends Error {
    constructor(problem, status) {
      super(problemText(problem, status));
      this.problem = problem || {};
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (state.token) headers.authorization = `Bearer ${state.token}`;
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit', cache: 'no-store',
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(data, response.status);
    return data;
  }

  function show(view) {
    $('signin').hidden = view !== 'signin';
    $('mfa').hidden = view !== 'mfa';
    $('account').hidden = view !== 'account';
    $('signout').hidden = view !== 'account';
  }

  // ---- white label ----
  // A member of an organization sees its logo and colours. Colours are set as CSS custom
  // properties (never as CSS text) and only when they are #rrggbb; the logo is an inline image
  // (the CSP allows data: images only). The origin checked both; the page checks again.
  const COLOUR = /^#[0-9a-fA-F]{6}$/;
  const LOGO = /^data:image\/(png|jpeg|webp);base64,[A-Za-z0-9+/]+=*$/;
  function claimsOf(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part));
    } catch (e) { return {}; }
  }
  function brand(branding) {
    const root = document.documentElement.style;
    const b = branding || {};
    if (COLOUR.test(b.primary_color || '')) root.setProperty('--ink', b.primary_color); else root.removeProperty('--ink');
    if (COLOUR.test(b.accent_color || '')) root.setProperty('--accent', b.accent_color); else root.removeProperty('--accent');
    const logo = $('brand-logo');
    if (LOGO.test(b.logo || '')) { logo.src = b.logo; logo.hidden = false; } else { logo.removeAttribute('src'); logo.hidden = true; }
  }
  async function applyBranding() {
    const org = claimsOf(state.token).org;
    if (!org) { brand(null); return; }
    try {
      const found = await api('GET', `/api/v1/orgs/${encodeURIComponent(org)}`);
      brand(found && found.policies && found.policies.branding);
    } catch (e) { brand(null); }
  }

  // ---- sign-in ----
  async function signedIn(answer) {
    state.token = answer.access_token;
    state.userId = answer.user_id;
    state.challenge = null;
    if (state.conditional) state.conditional.abort();
    show('account');
    say(t('signed_in'), 'ok');
    await applyBranding();
    await refresh();
  }

  async function passwordSignIn(event) {
    event.preventDefault();
    say(t('working'));
    try {
      const answer = await api('POST', '/api/v1/auth/login', { email: $('email').value, password: $('password').value });
      await signedIn(answer);
    } catch (e) {
      if (e.problem && e.problem.challenge_id) return askSecondFactor(e.problem);
      say(e.message, 'error');
    }
  }

  function askSecondFactor(problem) {
    state.challenge = problem.challenge_id;
    const methods = problem.methods || [];
    $('mfa-passkey').hidden = !methods.includes('webauthn');
    const codes = methods.filter((m) => m !== 'webauthn');
    $('mfa-code-form').hidden = codes.length === 0;
    $('mfa-method').replaceChildren(...codes.map((m) => new Option(t(`m_${m}`), m)));
    $('mfa-send').hidden = !codes.some((m) => m === 'email' || m === 'sms');
    show('mfa');
    say('');
  }

  async function mfaPasskey() {
    say(t('working'));
    try {
      const options = await api('POST', '/api/v1/auth/mfa/webauthn', { challenge_id: state.challenge });
      const credential = await W().startAuthentication({ optionsJSON: options.public_key });
      const answer = await api('POST', '/api/v1/auth/mfa', { challenge_id: state.challenge, method: 'webauthn', credential });
      await signedIn(answer);
    } catch (e) { say(e.message, 'error'); }
  }

  async function mfaCode(event) {
    event.preventDefault();
    try {
      const answer = await api('POST', '/api/v1/auth/mfa', {
        challenge_id: state.challenge, method: $('mfa-method').value, code: $('mfa-code').value.trim(),
      });
      await signedIn(answer);
    } catch (e) { say(e.message, 'error'); }
  }

  async function mfaSend() {
    try {
      await api('POST', '/api/v1/auth/mfa/send', { challenge_id: state.challenge, method: $('mfa-method').value });
      say('✓', 'ok');
    } catch (e) { say(e.message, 'error'); }
  }

  async function passkeySignIn(autofill) {
    const options = await api('POST', '/api/v1/auth/passkey/options');
    const credential = await W().startAuthentication({ optionsJSON: options.public_key, useBrowserAutofill: autofill });
    const answer = await api('POST', '/api/v1/auth/passkey', { ceremony_id: options.ceremony_id, credential });
    await signedIn(answer);
  }

  // Passkey autofill (conditional UI): the email field offers the device's passkeys.
  async function startAutofill() {
    try {
      if (!W() || !(await W().browserSupportsWebAuthnAutofill())) return;
      await passkeySignIn(true);
    } catch (e) {
      if (e && e.name !== 'AbortError' && !state.token) console.info('passkey autofill ended:', e.message);
    }
  }

  // ---- the account ----
  async function refresh() {
    const id = encodeURIComponent(state.userId);
    const [user, passkeys, sessions, events] = await Promise.all([
      api('GET', `/api/v1/users/${id}`),
      api('GET', `/api/v1/users/${id}/passkeys`),
      api('GET', `/api/v1/users/${id}/sessions`),
      api('GET', `/api/v1/users/${id}/security-events`),
    ]);
    $('profile-email').textContent = user.email;
    $('profile-tier').textContent = user.tier;
    $('profile-id').textContent = user.id;
    renderPasskeys(passkeys.passkeys || []);
    renderSessions(sessions.sessions || []);
    renderEvents(events.events || []);
  }

  const when = (iso) => (iso ? new Date(iso).toLocaleString(lang) : t('never'));
  const whenMs = (ms) => new Date(ms).toLocaleString(lang);

  function item(title, meta, buttons, tag) {
    const li = document.createElement('li');
    const what = document.createElement('div');
    what.className = 'what';
    const strong = document.createElement('strong');
    strong.textContent = title;
    if (tag) {
      const span = document.createElement('span');
      span.className = 'tag';
      span.textContent = tag;
      strong.append(span);
    }
    const small = document.createElement('span');
    small.className = 'meta';
    small.textContent = meta;
    what.append(strong, small);
    const actions = document.createElement('div');
    for (const [label, handler, cls] of buttons) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `${cls || 'secondary'} small-btn`;
      b.textContent = label;
      b.addEventListener('click', handler);
      actions.append(b);
    }
    li.append(what, actions);
    return li;
  }

  function renderPasskeys(list) {
    $('passkeys-empty').hidden = list.length > 0;
    $('passkeys').replaceChildren(...list.map((p) => {
      const li = item(
        p.label,
        `${t(p.kind)} · ${t('added')} ${when(p.created_at)} · ${t('last_used')} ${when(p.last_used_at)}`,
        [[t('rename'), () => renamePasskey(p)], [t('remove'), () => askRemoval(p), 'danger']],
        p.backup_state ? t('synced') : null,
      );
      li.dataset.passkey = p.id;
      return li;
    }));
  }

  // "Chrome 156", "Firefox 140"… from a user agent, for the session list.
  function browserName(ua) {
    if (!ua) return null;
    const m = ua.match(/(Edg|Firefox|HeadlessChrome|Chrome|Version)\/(\d+)/);
    const name = m ? { Edg: 'Edge', Version: 'Safari' }[m[1]] || m[1] : ua.slice(0, 40);
    const os = /Windows/.test(ua) ? 'Windows' : /Mac OS/.test(ua) ? 'macOS' : /Android/.test(ua) ? 'Android' : /Linux/.test(ua) ? 'Linux' : '';
    return m ? `${name} ${m[2]}${os ? ` · ${os}` : ''}` : name;
  }

  function renderSessions(list) {
    $('sessions').replaceChildren(...list.map((s) => item(
      browserName(s.user_agent) || s.id,
      `${s.ip || ''} · ${whenMs(s.created_at)}`,
      s.current ? [] : [[t('end'), () => endSession(s.id), 'danger']],
      s.current ? t('this_device') : null,
    )));
  }

  function renderEvents(list) {
    const name = (kind) => (T[lang][`ev_${kind}`] || T.en[`ev_${kind}`] || kind.replace(/_/g, ' '));
    $('events').replaceChildren(...list.slice(0, 15).map((e) => {
      const li = item(name(e.kind), when(e.at), []);
      li.dataset.kind = e.kind;
      return li;
    }));
  }

  async function addPasskey(kind) {
    say(t('working'));
    try {
      const id = encodeURIComponent(state.userId);
      const options = await api('POST', `/api/v1/users/${id}/passkeys/options`, {
        current_password: $('passkey-password').value, kind,
      });
      const credential = await W().startRegistration({ optionsJSON: options.public_key });
      const label = $('passkey-label').value.trim();
      await api('POST', `/api/v1/users/${id}/passkeys`, {
        ceremony_id: options.ceremony_id, credential, ...(label ? { label } : {}),
      });
      $('passkey-label').value = '';
      $('passkey-password').value = '';
      say(t('passkey_added'), 'ok');
      await refresh();
    } catch (e) { say(e.message, 'error'); }
  }

  async function renamePasskey(p) {
    const label = window.prompt(t('new_name'), p.label);
    if (label === null) return;
    try {
      await api('PATCH', `/api/v1/users/${encodeURIComponent(state.userId)}/passkeys/${encodeURIComponent(p.id)}`, { label });
      say(t('renamed'), 'ok');
      await refresh();
    } catch (e) { say(e.message, 'error'); }
  }

  function askRemoval(p) {
    state.pendingRemoval = p;
    $('stepup-form').hidden = false;
    $('stepup-password').focus();
  }

  // A removal: a step-up (password, then a passkey assertion) for this session, then the removal.
  async function confirmRemoval(event) {
    event.preventDefault();
    const p = state.pendingRemoval;
    if (!p) return;
    say(t('working'));
    try {
      const password = $('stepup-password').value;
      const options = await api('POST', '/api/v1/auth/step-up', { current_password: password, method: 'webauthn' });
      const credential = await W().startAuthentication({ optionsJSON: options.public_key });
      await api('POST', '/api/v1/auth/step-up', { current_password: password, method: 'webauthn', credential });
      await api('DELETE', `/api/v1/users/${encodeURIComponent(state.userId)}/passkeys/${encodeURIComponent(p.id)}`);
      state.pendingRemoval = null;
      $('stepup-form').hidden = true;
      $('stepup-password').value = '';
      say(t('passkey_removed'), 'ok');
      await refresh();
    } catch (e) { say(e.message, 'error'); }
  }

  async function startTotp(event) {
    event.preventDefault();
    try {
      const answer = await api('POST', `/api/v1/users/${encodeURIComponent(state.userId)}/mfa/totp`, {
        current_password: $('totp-password').value,
      });
      $('totp-qr').src = `data:image/svg+xml;base64,${btoa(answer.qr_svg)}`;
      $('totp-secret').textContent = answer.secret;
      $('totp-start-form').hidden = true;
      $('totp-confirm-form').hidden = false;
      say('');
    } catch (e) { say(e.message, 'error'); }
  }

  async function confirmTotp(event) {
    event.preventDefault();
    try {
      const answer = await api('POST', `/api/v1/users/${encodeURIComponent(state.userId)}/mfa/totp/confirm`, {
        code: $('totp-code').value.trim(),
      });
      $('totp-confirm-form').hidden = true;
      $('recovery').hidden = false;
      $('recovery-codes').replaceChildren(...answer.recovery_codes.map((c) => {
        const li = document.createElement('li');
        li.textContent = c;
        return li;
      }));
      say(t('totp_done'), 'ok');
      await refresh();
    } catch (e) { say(e.message, 'error'); }
  }

  async function endSession(sid) {
    try {
      await api('DELETE', `/api/v1/users/${encodeURIComponent(state.userId)}/sessions/${encodeURIComponent(sid)}`);
      say(t('session_ended'), 'ok');
      await refresh();
    } catch (e) { say(e.message, 'error'); }
  }

  async function signOut() {
    try { await api('POST', '/api/v1/auth/logout'); } catch (e) { /* the token is dropped anyway */ }
    state.token = null;
    state.userId = null;
    brand(null);
    show('signin');
    say(t('signed_out'), 'ok');
    startAutofill();
  }

  document.addEventListener('DOMContentLoaded', () => {
    translate();
    $('lang').addEventListener('click', () => {
      lang = lang === 'fr' ? 'en' : 'fr';
      translate();
      if (state.token) refresh().catch((e) => say(e.message, 'error'));
    });
    $('password-form').addEventListener('submit', passwordSignIn);
    $('passkey-signin').addEventListener('click', () => {
      if (!W() || !W().browserSupportsWebAuthn()) return say(t('no_webauthn'), 'error');
      say(t('working'));
      passkeySignIn(false).catch((e) => say(e.message, 'error'));
    });
    $('mfa-passkey').addEventListener('click', mfaPasskey);
    $('mfa-code-form').addEventListener('submit', mfaCode);
    $('mfa-send').addEventListener('click', mfaSend);
    $('add-passkey-form').addEventListener('submit', (e) => { e.preventDefault(); addPasskey('passkey'); });
    $('add-security-key').addEventListener('click', () => addPasskey('security_key'));
    $('stepup-form').addEventListener('submit', confirmRemoval);
    $('stepup-cancel').addEventListener('click', () => { $('stepup-form').hidden = true; state.pendingRemoval = null; });
    $('totp-start-form').addEventListener('submit', startTotp);
    $('totp-confirm-form').addEventListener('submit', confirmTotp);
    $('signout').addEventListener('click', signOut);
    show('signin');
    startAutofill();
  });
})();
