// Package config is the model of the email OAuth 2.0 proxy's INI file, the
// format the widely used Python proxy defines (docs/compatibility.md): orbit's
// `register` writes it, `serve` reads it, and the Python proxy can run from
// the same file.
//
// Reading. Parse follows Python's configparser exactly (interpolation off,
// option names case-insensitive, section names case-sensitive, '#'/';'
// comment lines only, indented continuation lines, [DEFAULT] fallback,
// duplicates refused), so both engines see the same values; a file the
// Python proxy refuses fails with a *SyntaxError naming file and line.
// gopkg.in/ini.v1 is deliberately not the reader: even with its options
// closest to configparser it strips backticks and triple quotes, keeps the
// indentation of continuation lines, ignores [DEFAULT] as a fallback,
// accepts duplicates configparser refuses and names no lines in errors
// (TestWhyNotIniV1 lists each case; docs/compatibility.md explains).
//
// Validating. Config.Validate and Lint judge any file, hand-edited or
// written by the Python proxy; Registration.Validate judges register's
// inputs with the same checks, located by flag.
//
// Writing. Registration.Apply rewrites an existing file through Editor,
// which changes only the lines it must. What a registration owns:
//
//   - [emailproxy]: the three booleans it sets (allow_catch_all_accounts is
//     only ever switched on, since other accounts' catch-all sections may
//     need it).
//   - The server sections it names, [IMAP-n], [POP-n], [SMTP-n] with n the
//     local port: server_address, server_port, local_address and (SMTP)
//     server_starttls; the legacy starttls key is renamed in place. A
//     section of the same protocol for the same upstream (server_address
//     and server_port) under another local port is the listener being
//     moved: it is renamed (keeping its comments and extra keys) or, when
//     the named section already exists, removed. Server sections for other
//     upstreams are never touched.
//   - The account section it names ("@", "@domain" or "user@domain"):
//     redirect_uri, redirect_listen_address, token_url, permission_url,
//     oauth2_scope, client_id, client_secret, oauth2_flow. An empty value
//     removes the key, except client_secret, which is kept. The docs'
//     misspelt redirect_list_address is renamed in place.
//
// Everything else stays as it is: comments, key order, unknown keys and
// sections, other accounts' sections, and every written-back token key
// (token_salt, token_iterations, access_token, access_token_expiry,
// refresh_token, last_activity, client_secret_encrypted), so
// re-registering never loses tokens. WriteFile then replaces the file
// atomically under Lock, mode 0600, keeping path+".bak".
package config
