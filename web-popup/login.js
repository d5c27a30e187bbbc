// The login page: posts the credentials to /api/login, then opens the agent
// page (agents) or the board (supervisors, admins). French by default, ?lang=en.
// Every text set here is ours and goes through textContent.
"use strict";

(function () {
  const TEXT = {
    fr: {
      title: "Fiche — connexion", heading: "Connexion", login: "Identifiant", password: "Mot de passe",
      submit: "Se connecter", wait: "Connexion…", switch_to: "English", switch_lang: "en",
      missing: "Saisissez votre identifiant et votre mot de passe.",
      bad: "Identifiant ou mot de passe incorrect (ou compte désactivé).",
      limited: "Trop d’essais. Réessayez dans {n} s.",
      network: "Serveur injoignable. Vérifiez la connexion et réessayez.",
      other: "La connexion a échoué (erreur {n}).",
      busy: "Le serveur est très sollicité. Réessayez dans un instant.",
    },
    en: {
      title: "Fiche — sign in", heading: "Sign in", login: "Login", password: "Password",
      submit: "Sign in", wait: "Signing in…", switch_to: "Français", switch_lang: "fr",
      missing: "Enter your login and password.",
      bad: "Wrong login or password (or account disabled).",
      limited: "Too many attempts. Try again in {n} s.",
      network: "Cannot reach the server. Check the connection and try again.",
      other: "Sign-in failed (error {n}).",
      busy: "The server is very busy. Try again in a moment.",
    },
  };

  const params = new URLSearchParams(location.search);
  let lang = params.get("lang");
  if (lang !== "en" && lang !== "fr") {
    try { lang = localStorage.getItem("fiche.lang"); } catch (_) { lang = null; }
  }
  if (lang !== "en") lang = "fr";
  try { localStorage.setItem("fiche.lang", lang); } catch (_) { /* private mode */ }
  const t = TEXT[lang];

  const $ = (id) => document.getElementById(id);
  document.documentElement.lang = lang;
  document.title = t.title;
  $("login-title").textContent = t.heading;
  $("login-label").textContent = t.login;
  $("password-label").textContent = t.password;
  $("submit").textContent = t.submit;
  const other = new URLSearchParams(location.search);
  other.set("lang", t.switch_lang);
  $("lang-switch").textContent = t.switch_to;
  $("lang-switch").href = "?" + other.toString();

  /** Where to go after login: `next` when it is a page of this site, else by role. */
  function destination(role) {
    const next = params.get("next");
    if (next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\")) return next;
    return role === "agent" ? "/" : "/board.html";
  }

  function showError(text) {
    $("error").textContent = text;
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const login = $("login").value.trim();
    const password = $("password").value;
    if (!login || !password) {
      showError(t.missing);
      return;
    }
    showError("");
    const button = $("submit");
    button.disabled = true;
    button.textContent = t.wait;
    try {
      // 503 means the password workers are saturated (a whole team signing in at
      // once): wait as the server asks and try again, so nobody sees an error.
      let response;
      for (let attempt = 0; ; attempt++) {
        response = await fetch("/api/login", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          credentials: "same-origin",
          body: JSON.stringify({ login, password }),
        });
        if (response.status !== 503 || attempt >= 4) break;
        const pause = parseInt(response.headers.get("Retry-After") || "1", 10);
        await new Promise((done) => setTimeout(done, 1000 * (Number.isFinite(pause) ? Math.min(pause, 10) : 1)));
      }
      if (response.ok) {
        const body = await response.json();
        location.href = destination(body && body.user ? body.user.role : "agent");
        return;
      }
      if (response.status === 401) {
        showError(t.bad);
        $("password").value = "";
        $("password").focus();
      } else if (response.status === 429) {
        const wait = parseInt(response.headers.get("Retry-After") || "60", 10);
        showError(t.limited.replace("{n}", String(Number.isFinite(wait) ? wait : 60)));
      } else if (response.status === 503) {
        showError(t.busy);
      } else {
        showError(t.other.replace("{n}", String(response.status)));
      }
    } catch (_) {
      showError(t.network);
    } finally {
      button.disabled = false;
      button.textContent = t.submit;
    }
  });
})();
