// A real SAML IdP for Tessera's end-to-end tests: samlify (npm), signing with its own
// key. Loopback only. Started by tests/api/saml_e2e.rs with:
//   node idp.js PORT SP_METADATA_URL MODE[,post][,slopost][,enc=ALG][,etsign][,oaep256]
// MODE: assertion | response | both  (which element(s) the IdP signs); with `,post` the
// IdP's metadata offers only the HTTP-POST binding for single sign-on; with `,enc=ALG`
// (aes128-cbc, aes256-cbc, aes128-gcm, aes256-gcm) samlify encrypts the assertion to the
// encryption certificate in Tessera's metadata (RSA-OAEP, SHA-1, MGF1-SHA1); `,oaep256`
// (with MODE assertion) instead encrypts it here with AES-256-GCM under xmlenc11 RSA-OAEP
// with SHA-256 and MGF1-SHA256, which samlify does not offer; `,etsign` signs the
// Response after encrypting (samlify's default: before); `,slopost` offers Single
// Logout by HTTP-POST instead of HTTP-Redirect; `,forge` (with `,oaep256`)
// plays an attacker who knows only Tessera's public encryption certificate: every
// signature is removed and the NameID changed before the assertion is encrypted.
// Endpoints:
//   GET /metadata                 the IdP's metadata (Tessera imports it)
//   GET /sso?SAMLRequest&RelayState   parses the AuthnRequest (HTTP-Redirect) and answers
//                                 JSON {SAMLResponse, RelayState, acs} instead of an
//                                 auto-posting form, so the test can post it itself
//   POST /sso (form: SAMLRequest, RelayState)   the same over HTTP-POST (`,post` only)
//   GET /unsolicited              an IdP-initiated response (no AuthnRequest)
//   GET /logout-request?nameid=N  an IdP-initiated LogoutRequest to Tessera, signed, as
//                                 JSON {url} (Redirect) or {action, SAMLRequest, RelayState}
//   GET|POST /slo                 Tessera's LogoutRequest (answered with a signed
//                                 LogoutResponse, as JSON like the above) or its
//                                 LogoutResponse (JSON {ok: true})
//   POST /rotate?then=both|new    sign with a second key from now on; the metadata lists
//                                 the old and the new certificate (both), or the new one
//   GET /bearer?audience&recipient   one signed Assertion for the SAML 2.0 bearer grant
//                                 (RFC 7522), base64url, as JSON {assertion}
// For bench/ (the `acs` scenario), without a server:
//   node idp.js generate SP_METADATA_URL COUNT OUT_DIR
// writes COUNT IdP-initiated responses (assertion signed, valid for 30 minutes, each with
// its own IDs), one urlencoded form body per line, to OUT_DIR/acs-bodies.txt, and the
// IdP's metadata to OUT_DIR/idp-metadata.xml.
// Users: every login is alice@example.com, in groups "engineers" and "admins".
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const saml = require('samlify');

const generating = process.argv[2] === 'generate';
const [port, spMetadataUrl, modeArg] = generating
  ? [null, process.argv[3], 'assertion']
  : process.argv.slice(2);
const [mode, ...flags] = modeArg.split(',');
const postBinding = flags.includes('post');
const sloPost = flags.includes('slopost');
const encFlag = flags.find((f) => f.startsWith('enc='));
const encryption = encFlag ? encFlag.slice(4) : null;
const oaep256 = flags.includes('oaep256');
// Sign the Response after encrypting (Okta, ADFS); samlify's default signs it before.
const encryptThenSign = flags.includes('etsign');
const forge = flags.includes('forge');
const dataAlgorithms = {
  'aes128-cbc': 'http://www.w3.org/2001/04/xmlenc#aes128-cbc',
  'aes256-cbc': 'http://www.w3.org/2001/04/xmlenc#aes256-cbc',
  'aes128-gcm': 'http://www.w3.org/2009/xmlenc11#aes128-gcm',
  'aes256-gcm': 'http://www.w3.org/2009/xmlenc11#aes256-gcm',
};
if (encryption && !dataAlgorithms[encryption]) throw new Error(`unknown enc=${encryption}`);
const here = __dirname;
const key = fs.readFileSync(path.join(here, '../fixtures/samlify-idp.key'), 'utf8');
const cert = fs.readFileSync(path.join(here, '../fixtures/samlify-idp.crt'), 'utf8');
const key2 = fs.readFileSync(path.join(here, '../fixtures/samlify-idp-2.key'), 'utf8');
const cert2 = fs.readFileSync(path.join(here, '../fixtures/samlify-idp-2.crt'), 'utf8');
const base = generating ? 'https://bench-idp.invalid' : `http://127.0.0.1:${port}`;

// samlify validates XML against a schema before parsing; this test IdP only reads
// Tessera's AuthnRequest, so a no-op validator is enough (samlify's README allows it).
saml.setSchemaValidator({ validate: () => Promise.resolve('skipped') });

function makeIdp(key, cert) {
  return saml.IdentityProvider({
    entityID: `${base}/metadata`,
    privateKey: key,
    signingCert: cert,
    isAssertionEncrypted: Boolean(encryption),
    dataEncryptionAlgorithm: encryption ? dataAlgorithms[encryption] : undefined,
    keyEncryptionAlgorithm: 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p',
    singleSignOnService: [
      {
        Binding: postBinding ? saml.Constants.namespace.binding.post : saml.Constants.namespace.binding.redirect,
        Location: `${base}/sso`,
      },
    ],
    singleLogoutService: [
      {
        Binding: sloPost ? saml.Constants.namespace.binding.post : saml.Constants.namespace.binding.redirect,
        Location: `${base}/slo`,
      },
    ],
    // Tessera signs its logout messages: verify them against its metadata.
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
    nameIDFormat: ['urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'],
    // Tessera signs its AuthnRequests: verify each against the certificate in its metadata.
    wantAuthnRequestsSigned: true,
    requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  });
}

// The signing key; `POST /rotate` switches to a second one (metadata URL tests).
let idp = makeIdp(key, cert);
let rotation = null; // null, 'both' (old and new certificate published) or 'new'

const user = { email: 'alice@example.com' };

// Adds attributes to samlify's default template (it has none).
function withAttributes(requestInfo, lifetimeMs = 5 * 60 * 1000, overrides = {}) {
  return (template) => {
    const id = `_${require('node:crypto').randomBytes(16).toString('hex')}`;
    const assertionId = `_${require('node:crypto').randomBytes(16).toString('hex')}`;
    const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
    const now = new Date();
    const later = new Date(now.getTime() + lifetimeMs);
    const attrs =
      '<saml:Attribute Name="email"><saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute>' +
      '<saml:Attribute Name="displayName"><saml:AttributeValue>Alice Example</saml:AttributeValue></saml:Attribute>' +
      '<saml:Attribute Name="groups"><saml:AttributeValue>engineers</saml:AttributeValue><saml:AttributeValue>admins</saml:AttributeValue></saml:Attribute>';
    const acs = sp.entityMeta.getAssertionConsumerService('post');
    const values = {
      ID: id,
      AssertionID: assertionId,
      Destination: acs,
      Audience: sp.entityMeta.getEntityID(),
      EntityID: sp.entityMeta.getEntityID(),
      SubjectRecipient: acs,
      Issuer: idp.entityMeta.getEntityID(),
      IssueInstant: iso(now),
      AssertionConsumerServiceURL: acs,
      StatusCode: 'urn:oasis:names:tc:SAML:2.0:status:Success',
      ConditionsNotBefore: iso(now),
      ConditionsNotOnOrAfter: iso(later),
      SubjectConfirmationDataNotOnOrAfter: iso(later),
      NameIDFormat: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
      NameID: user.email,
      InResponseTo: requestInfo ? requestInfo.extract.request.id : '',
      AuthnStatement:
        `<saml:AuthnStatement AuthnInstant="${iso(now)}" SessionIndex="${assertionId}">` +
        '<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>' +
        '</saml:AuthnStatement>',
      AttributeStatement: `<saml:AttributeStatement>${attrs}</saml:AttributeStatement>`,
    };
    Object.assign(values, overrides);
    let context = template;
    for (const [k, v] of Object.entries(values)) {
      context = context.split(`{${k}}`).join(v);
    }
    if (!requestInfo) {
      context = context.split(' InResponseTo=""').join('');
    }
    return { id, context };
  };
}

let sp;

async function loadSp() {
  const res = await fetch(spMetadataUrl);
  let metadata = await res.text();
  const wantAssertionsSigned = mode === 'assertion' || mode === 'both';
  metadata = metadata.replace(/WantAssertionsSigned="[^"]*"/, `WantAssertionsSigned="${wantAssertionsSigned}"`);
  sp = saml.ServiceProvider({
    metadata,
    wantMessageSigned: mode === 'response' || mode === 'both',
    // This IdP signs the logout messages it sends Tessera.
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
  });
}

async function generate(count, outDir) {
  await loadSp();
  fs.writeFileSync(path.join(outDir, 'idp-metadata.xml'), idp.getMetadata());
  const out = fs.openSync(path.join(outDir, 'acs-bodies.txt'), 'w');
  const started = Date.now();
  for (let i = 1; i <= count; i++) {
    const r = await idp.createLoginResponse(sp, null, 'post', user, {
      customTagReplacement: withAttributes(null, 30 * 60 * 1000),
    });
    fs.writeSync(out, `SAMLResponse=${encodeURIComponent(r.context)}\n`);
    if (i % 5000 === 0 || i === count) {
      console.error(`  ${i}/${count} responses signed (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    }
  }
  fs.closeSync(out);
}

// The metadata: while rotating ('both'), the old certificate is still listed beside
// the new one, as IdPs do during a rollover.
function metadata() {
  const xml = idp.getMetadata();
  if (rotation !== 'both') return xml;
  const start = xml.indexOf('<KeyDescriptor use="signing"');
  const end = xml.indexOf('</KeyDescriptor>', start) + '</KeyDescriptor>'.length;
  const body = (pem) => pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const old = xml.slice(start, end).split(body(cert2)).join(body(cert));
  return xml.slice(0, end) + old + xml.slice(end);
}

// Encrypts the (signed) assertion of an unsigned response with AES-256-GCM, the key under
// xmlenc11 RSA-OAEP with SHA-256 and MGF1-SHA256, to the SP's encryption certificate.
function encryptOaep256(base64Response) {
  const crypto = require('node:crypto');
  let xml = Buffer.from(base64Response, 'base64').toString('utf8');
  if (forge) {
    xml = xml.replace(/<ds:Signature[\s\S]*?<\/ds:Signature>/g, '').split('alice@example.com').join('mallory@example.com');
  }
  const start = xml.indexOf('<saml:Assertion');
  const end = xml.indexOf('</saml:Assertion>') + '</saml:Assertion>'.length;
  const cert = sp.entityMeta.getX509Certificate('encryption');
  const pem = `-----BEGIN CERTIFICATE-----\n${String(cert).replace(/\s+/g, '')}\n-----END CERTIFICATE-----\n`;
  const publicKey = crypto.createPublicKey(pem);
  const cek = crypto.randomBytes(32);
  const iv = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', cek, iv);
  const body = Buffer.concat([cipher.update(xml.slice(start, end), 'utf8'), cipher.final(), cipher.getAuthTag()]);
  const wrapped = crypto.publicEncrypt(
    { key: publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    cek,
  );
  const enc =
    '<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element">' +
    '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>' +
    '<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>' +
    '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep">' +
    '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>' +
    '<xenc11:MGF xmlns:xenc11="http://www.w3.org/2009/xmlenc11#" Algorithm="http://www.w3.org/2009/xmlenc11#mgf1sha256"/>' +
    '</xenc:EncryptionMethod>' +
    `<xenc:CipherData><xenc:CipherValue>${wrapped.toString('base64')}</xenc:CipherValue></xenc:CipherData>` +
    '</xenc:EncryptedKey></ds:KeyInfo>' +
    `<xenc:CipherData><xenc:CipherValue>${Buffer.concat([iv, body]).toString('base64')}</xenc:CipherValue></xenc:CipherData>` +
    '</xenc:EncryptedData></saml:EncryptedAssertion>';
  return Buffer.from(xml.slice(0, start) + enc + xml.slice(end), 'utf8').toString('base64');
}

// Answers a parsed AuthnRequest with a signed response, as JSON for the test to post.
async function answer(res, parsed, relayState) {
  res.setHeader('x-name-id-format', parsed.extract.nameIDPolicy ? String(parsed.extract.nameIDPolicy.format) : '');
  const out = await idp.createLoginResponse(sp, parsed, 'post', user, {
    customTagReplacement: withAttributes(parsed),
    encryptThenSign,
  });
  const SAMLResponse = oaep256 ? encryptOaep256(out.context) : out.context;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ SAMLResponse, RelayState: relayState, acs: out.entityEndpoint }));
}

async function main() {
  await loadSp();

  http
    .createServer(async (req, res) => {
      const url = new URL(req.url, base);
      try {
        if (url.pathname === '/metadata') {
          res.writeHead(200, { 'content-type': 'application/xml' });
          res.end(metadata());
          return;
        }
        if (url.pathname === '/sso' && req.method === 'POST') {
          if (!postBinding) {
            res.writeHead(405);
            res.end();
            return;
          }
          let raw = '';
          for await (const chunk of req) raw += chunk;
          const body = Object.fromEntries(new URLSearchParams(raw));
          // The enveloped signature is checked against the certificate in Tessera's metadata.
          await answer(res, await idp.parseLoginRequest(sp, 'post', { body }), body.RelayState);
          return;
        }
        if (url.pathname === '/sso') {
          const query = Object.fromEntries(url.searchParams);
          // The signed octet string is the raw query without its Signature parameter
          // (SAML bindings 3.4.4.1), exactly as Tessera encoded it.
          const octetString = url.search
            .slice(1)
            .split('&')
            .filter((p) => !p.startsWith('Signature='))
            .join('&');
          await answer(res, await idp.parseLoginRequest(sp, 'redirect', { query, octetString }), query.RelayState);
          return;
        }
        if (url.pathname === '/rotate' && req.method === 'POST') {
          rotation = url.searchParams.get('then') === 'new' ? 'new' : 'both';
          idp = makeIdp(key2, cert2);
          res.writeHead(204);
          res.end();
          return;
        }
        if (url.pathname === '/logout-request') {
          const nameid = url.searchParams.get('nameid');
          const user = { logoutNameID: nameid, sessionIndex: '_idp-session-1' };
          res.writeHead(200, { 'content-type': 'application/json' });
          if (sloPost) {
            const r = idp.createLogoutRequest(sp, 'post', user, { relayState: 'idp-relay' });
            res.end(JSON.stringify({ action: r.entityEndpoint, SAMLRequest: r.context, RelayState: r.relayState }));
          } else {
            const r = idp.createLogoutRequest(sp, 'redirect', user, { relayState: 'idp-relay' });
            res.end(JSON.stringify({ url: r.context }));
          }
          return;
        }
        if (url.pathname === '/slo') {
          const binding = req.method === 'POST' ? 'post' : 'redirect';
          let fields;
          let request;
          if (binding === 'post') {
            let raw = '';
            for await (const chunk of req) raw += chunk;
            fields = Object.fromEntries(new URLSearchParams(raw));
            request = { body: fields };
          } else {
            fields = Object.fromEntries(url.searchParams);
            const octetString = url.search
              .slice(1)
              .split('&')
              .filter((p) => !p.startsWith('Signature='))
              .join('&');
            request = { query: fields, octetString };
          }
          res.setHeader('content-type', 'application/json');
          if (fields.SAMLResponse) {
            const parsed = await idp.parseLogoutResponse(sp, binding, request);
            res.writeHead(200);
            res.end(JSON.stringify({ ok: true, inResponseTo: parsed.extract.response && parsed.extract.response.inResponseTo }));
            return;
          }
          const parsed = await idp.parseLogoutRequest(sp, binding, request);
          const out = idp.createLogoutResponse(sp, parsed, binding, { relayState: fields.RelayState });
          res.writeHead(200);
          if (binding === 'post') {
            res.end(JSON.stringify({ action: out.entityEndpoint, SAMLResponse: out.context, RelayState: out.relayState, nameid: parsed.extract.nameID }));
          } else {
            res.end(JSON.stringify({ url: out.context, nameid: parsed.extract.nameID }));
          }
          return;
        }
        if (url.pathname === '/bearer') {
          const q = Object.fromEntries(url.searchParams);
          const out = await idp.createLoginResponse(sp, null, 'post', user, {
            customTagReplacement: withAttributes(null, 5 * 60 * 1000, {
              Audience: q.audience,
              SubjectRecipient: q.recipient,
              Destination: q.recipient,
            }),
          });
          const xml = Buffer.from(out.context, 'base64').toString('utf8');
          const start = xml.indexOf('<saml:Assertion');
          const end = xml.indexOf('</saml:Assertion>') + '</saml:Assertion>'.length;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ assertion: Buffer.from(xml.slice(start, end), 'utf8').toString('base64url') }));
          return;
        }
        if (url.pathname === '/unsolicited') {
          const out = await idp.createLoginResponse(sp, null, 'post', user, {
            customTagReplacement: withAttributes(null),
          });
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ SAMLResponse: out.context, acs: out.entityEndpoint }));
          return;
        }
        res.writeHead(404);
        res.end();
      } catch (e) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(e && e.stack ? e.stack : e));
      }
    })
    .listen(Number(port), '127.0.0.1', () => console.log(`samlify IdP on ${base} (${modeArg})`));
}

(generating ? generate(Number(process.argv[4]), process.argv[5]) : main()).catch((e) => {
  console.error(e);
  process.exit(1);
});
