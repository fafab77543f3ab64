"""App profiles: where the SAML stacks that legacy apps run on keep their session and their endpoints.

Paths are each stack's defaults; a route picks a profile and overrides any key (`app_cookies`, `acs_path`,
`sign_in_url`, `logout_paths`, `app_logout_url`) where the app was set up differently. Each is an entry point in
pyproject.toml under the name it has here.
"""

from __future__ import annotations

from gateway.plugin import AppProfile

GENERIC = AppProfile("generic", ("session",), "/saml/acs", "/login", ("/logout",))
SHIBBOLETH = AppProfile(
    "shibboleth", ("_shibsession_*",), "/Shibboleth.sso/SAML2/POST", "/Shibboleth.sso/Login",
    ("/Shibboleth.sso/Logout",), "/Shibboleth.sso/Logout",
)
MELLON = AppProfile(
    "mellon", ("mellon-cookie",), "/mellon/postResponse", "/mellon/login", ("/mellon/logout",), "/mellon/logout",
)
SIMPLESAMLPHP = AppProfile(
    "simplesamlphp", ("SimpleSAMLSessionID", "SimpleSAMLAuthToken", "PHPSESSID"),
    "/simplesaml/module.php/saml/sp/saml2-acs.php/default-sp",
    "/simplesaml/module.php/core/authenticate.php?as=default-sp",
    ("/simplesaml/module.php/core/as_logout.php",), "/simplesaml/module.php/core/as_logout.php?AuthId=default-sp",
)
SPRING = AppProfile(
    "spring-saml", ("JSESSIONID",), "/login/saml2/sso/okta", "/saml2/authenticate/okta", ("/logout",), "/logout",
)
SERVLET = AppProfile("servlet", ("JSESSIONID",), "/saml/acs", "/login", ("/logout",), "/logout")
PHP = AppProfile("php", ("PHPSESSID",), "/saml/acs", "/login", ("/logout",), "/logout")
ASPNET = AppProfile(
    "aspnet", (".AspNetCore.Cookies*", "ASP.NET_SessionId", ".ASPXAUTH"), "/Saml2/Acs", "/Saml2/SignIn",
    ("/Saml2/Logout", "/Account/LogOff"), None,
)
