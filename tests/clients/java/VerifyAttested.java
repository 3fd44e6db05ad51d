// VerifyAttested [--strict] CA DOCUMENT NONCE: check an Azure attested document (spec §7) the
// way a Java relying party does, with BouncyCastle for the CMS structure and java.security for
// the certificate chain, and print what it vouches for as one line of JSON.
//
//   CA        the trust anchor(s) you pin: a PEM or DER file, or an http:// URL (azimds'
//             control listener serves http://127.0.0.1:16926/attested/ca.pem; the leaf's
//             "CA Issuers" URL serves the same CA as DER)
//   DOCUMENT  the {"encoding":"pkcs7","signature":"..."} JSON: a file, or the IMDS URL itself
//             (fetched with `Metadata: true` and no proxy, as Microsoft's imdssample.java does)
//   NONCE     the nonce you asked for
//   --strict  hand BouncyCastle the SignedData exactly as received, which it refuses for
//             Azure's documents (see AZURE_DIGEST_OIDS)
//
// Exit status 0 when everything holds; 1, with the reason on stderr, when anything does not.
// Dependencies (Debian): libbcprov-java libbcpkix-java libbcutil-java libgoogle-gson-java.

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.Proxy;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.Security;
import java.security.cert.CertPath;
import java.security.cert.CertPathBuilder;
import java.security.cert.CertPathValidator;
import java.security.cert.CertStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.PKIXCertPathValidatorResult;
import java.security.cert.TrustAnchor;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bouncycastle.asn1.ASN1Encodable;
import org.bouncycastle.asn1.ASN1EncodableVector;
import org.bouncycastle.asn1.ASN1ObjectIdentifier;
import org.bouncycastle.asn1.ASN1Primitive;
import org.bouncycastle.asn1.DERNull;
import org.bouncycastle.asn1.DERSet;
import org.bouncycastle.asn1.cms.CMSObjectIdentifiers;
import org.bouncycastle.asn1.cms.ContentInfo;
import org.bouncycastle.asn1.cms.SignedData;
import org.bouncycastle.asn1.cms.SignerInfo;
import org.bouncycastle.asn1.nist.NISTObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PKCSObjectIdentifiers;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cms.CMSSignedData;
import org.bouncycastle.cms.SignerInformation;
import org.bouncycastle.cms.SignerInformationVerifier;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;

public final class VerifyAttested {
    /** The names Azure's signing leaves have (coder/coder's check, spec §7.6). */
    private static final Pattern SIGNER_NAME =
        Pattern.compile("^(.*\\.)?metadata\\.(azure\\.(com|us|cn)|microsoftazure\\.de)$");
    /** timeStamp's form, `MM/dd/yy HH:mm:ss -0000` in UTC (spec §7.3). */
    private static final DateTimeFormatter AZURE_TIME =
        DateTimeFormatter.ofPattern("MM/dd/yy HH:mm:ss xx");
    /** How far our clock may lag the signer's when checking createdOn. */
    private static final Duration CLOCK_SKEW = Duration.ofMinutes(5);
    /**
     * Azure's SignedData names `sha256WithRSAEncryption`, a signature algorithm, as its
     * digestAlgorithm (spec §7.4, from real documents). OpenSSL 3 and .NET accept that;
     * BouncyCastle does not ("no such algorithm: 1.2.840.113549.1.1.11", a refusal its
     * maintainers call correct: bcgit/bc-java#1553), and it also rebuilds the DigestInfo it
     * checks the RSA signature against from that OID. So a Java relying party rewrites the OID
     * to the digest it names before verifying; with no signed attributes the signature covers
     * the content alone, so the rewrite changes nothing that is signed.
     */
    private static final Map<ASN1ObjectIdentifier, ASN1ObjectIdentifier> AZURE_DIGEST_OIDS = Map.of(
        PKCSObjectIdentifiers.sha256WithRSAEncryption, NISTObjectIdentifiers.id_sha256,
        PKCSObjectIdentifiers.sha384WithRSAEncryption, NISTObjectIdentifiers.id_sha384,
        PKCSObjectIdentifiers.sha512WithRSAEncryption, NISTObjectIdentifiers.id_sha512);

    public static void main(String[] args) {
        List<String> rest = new ArrayList<>(Arrays.asList(args));
        boolean strict = rest.remove("--strict");
        if (rest.size() != 3) {
            System.err.println("usage: VerifyAttested [--strict] CA DOCUMENT NONCE");
            System.exit(2);
        }
        try {
            Security.addProvider(new BouncyCastleProvider());
            byte[] ca = read(rest.get(0));
            byte[] document = read(rest.get(1));
            JsonObject statement = verify(ca, document, rest.get(2), strict);
            System.out.println(new GsonBuilder().disableHtmlEscaping().create().toJson(statement));
        } catch (Exception e) {
            System.err.println("attested document rejected: " + e);
            System.exit(1);
        }
    }

    static JsonObject verify(byte[] caSource, byte[] documentJson, String nonce, boolean strict)
            throws Exception {
        JsonObject document = jsonObject(documentJson);
        require("pkcs7".equals(document.get("encoding").getAsString()), "not a PKCS#7 document");
        byte[] der = Base64.getDecoder().decode(document.get("signature").getAsString());

        // 1. The CMS SignedData: attached content, one signer, whose signature over the
        //    content verifies with the key of the certificate it names.
        CMSSignedData signed = strict ? new CMSSignedData(der) : withDigestOids(der);
        require(signed.getSignedContent() != null, "the content is not attached");
        byte[] content = (byte[]) signed.getSignedContent().getContent();
        Collection<SignerInformation> signers = signed.getSignerInfos().getSigners();
        require(signers.size() == 1, "expected one signer, found " + signers.size());
        SignerInformation signer = signers.iterator().next();
        @SuppressWarnings("unchecked")
        Collection<X509CertificateHolder> named =
            signed.getCertificates().getMatches(signer.getSID());
        require(named.size() == 1, "the signer's certificate is not in the document");
        X509Certificate leaf = new JcaX509CertificateConverter().setProvider("BC")
            .getCertificate(named.iterator().next());
        SignerInformationVerifier verifier =
            new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC").build(leaf);
        require(signer.verify(verifier), "the signature does not match the content");

        // Microsoft's imdssample.java reads the certificates with the JDK's own PKCS#7 parser.
        Collection<? extends Certificate> jdkCerts =
            x509().generateCertificates(new ByteArrayInputStream(der));
        require(jdkCerts.contains(leaf), "java.security does not find the signer in the PKCS#7");

        // 2. The chain: built from the leaf to a certificate you pin and validated, by PKIX,
        //    revocation off (the leaf names no CRL or OCSP responder).
        List<X509Certificate> pinned = certificates(caSource);
        require(!pinned.isEmpty(), "no certificate in the CA source");
        Set<TrustAnchor> anchors = new HashSet<>();
        for (X509Certificate ca : pinned) {
            anchors.add(new TrustAnchor(ca, null));
        }
        X509CertSelector target = new X509CertSelector();
        target.setCertificate(leaf);
        PKIXBuilderParameters params = new PKIXBuilderParameters(anchors, target);
        params.setRevocationEnabled(false);
        List<Certificate> known = new ArrayList<>(pinned);
        known.add(leaf);
        params.addCertStore(
            CertStore.getInstance("Collection", new CollectionCertStoreParameters(known)));
        CertPath path = CertPathBuilder.getInstance("PKIX").build(params).getCertPath();
        PKIXCertPathValidatorResult valid = (PKIXCertPathValidatorResult)
            CertPathValidator.getInstance("PKIX").validate(path, params);
        String cn = commonName(leaf);
        require(SIGNER_NAME.matcher(cn).matches(), "unexpected signer " + cn);

        // 3. The statement: your nonce, and within its validity.
        JsonObject statement = jsonObject(content);
        JsonObject timeStamp = statement.getAsJsonObject("timeStamp");
        Instant createdOn = azureTime(timeStamp.get("createdOn").getAsString());
        Instant expiresOn = azureTime(timeStamp.get("expiresOn").getAsString());
        Instant now = Instant.now();
        require(!createdOn.isAfter(now.plus(CLOCK_SKEW)), "the document was made in the future");
        require(now.isBefore(expiresOn), "the document has expired");
        require(nonce.equals(statement.get("nonce").getAsString()), "not the nonce you sent");

        JsonObject out = new JsonObject();
        for (String key : new String[] {"nonce", "vmId", "subscriptionId"}) {
            if (statement.has(key)) {
                out.add(key, statement.get(key));
            }
        }
        out.addProperty("createdOn", createdOn.toString());
        out.addProperty("expiresOn", expiresOn.toString());
        out.addProperty("signer", leaf.getSubjectX500Principal().getName());
        out.add("signerDnsNames", dnsNames(leaf));
        X509Certificate anchor = valid.getTrustAnchor().getTrustedCert();
        out.addProperty("anchor", anchor.getSubjectX500Principal().getName());
        out.addProperty("pathLength", path.getCertificates().size());
        out.addProperty("jdkCertificates", jdkCerts.size());
        return out;
    }

    /**
     * The SignedData in `der` with each AZURE_DIGEST_OIDS signature OID replaced by its digest,
     * in SignerInfos without signed attributes only (where the OID is not itself signed).
     */
    private static CMSSignedData withDigestOids(byte[] der) throws Exception {
        ContentInfo info = ContentInfo.getInstance(ASN1Primitive.fromByteArray(der));
        require(CMSObjectIdentifiers.signedData.equals(info.getContentType()), "not a SignedData");
        SignedData signed = SignedData.getInstance(info.getContent());
        ASN1EncodableVector digests = new ASN1EncodableVector();
        for (ASN1Encodable algorithm : signed.getDigestAlgorithms()) {
            digests.add(digestOid(AlgorithmIdentifier.getInstance(algorithm)));
        }
        ASN1EncodableVector signers = new ASN1EncodableVector();
        for (ASN1Encodable encoded : signed.getSignerInfos()) {
            SignerInfo signer = SignerInfo.getInstance(encoded);
            AlgorithmIdentifier digest = signer.getAuthenticatedAttributes() == null
                ? digestOid(signer.getDigestAlgorithm()) : signer.getDigestAlgorithm();
            signers.add(new SignerInfo(signer.getSID(), digest,
                signer.getAuthenticatedAttributes(), signer.getDigestEncryptionAlgorithm(),
                signer.getEncryptedDigest(), signer.getUnauthenticatedAttributes()));
        }
        SignedData fixed = new SignedData(new DERSet(digests), signed.getEncapContentInfo(),
            signed.getCertificates(), signed.getCRLs(), new DERSet(signers));
        return new CMSSignedData(new ContentInfo(CMSObjectIdentifiers.signedData, fixed));
    }

    private static AlgorithmIdentifier digestOid(AlgorithmIdentifier algorithm) {
        ASN1ObjectIdentifier digest = AZURE_DIGEST_OIDS.get(algorithm.getAlgorithm());
        return digest == null ? algorithm : new AlgorithmIdentifier(digest, DERNull.INSTANCE);
    }

    private static CertificateFactory x509() throws Exception {
        return CertificateFactory.getInstance("X.509");
    }

    private static JsonObject jsonObject(byte[] utf8) {
        return JsonParser.parseString(new String(utf8, StandardCharsets.UTF_8)).getAsJsonObject();
    }

    private static Instant azureTime(String text) {
        return OffsetDateTime.parse(text, AZURE_TIME).toInstant();
    }

    private static String commonName(X509Certificate cert) throws Exception {
        for (Rdn rdn : new LdapName(cert.getSubjectX500Principal().getName()).getRdns()) {
            if (rdn.getType().equalsIgnoreCase("CN")) {
                return rdn.getValue().toString();
            }
        }
        return "";
    }

    private static JsonArray dnsNames(X509Certificate cert) throws Exception {
        JsonArray names = new JsonArray();
        if (cert.getSubjectAlternativeNames() != null) {
            for (List<?> san : cert.getSubjectAlternativeNames()) {
                if ((Integer) san.get(0) == 2) { // dNSName
                    names.add((String) san.get(1));
                }
            }
        }
        return names;
    }

    /** Every certificate in `source`, PEM (one or several) or DER. */
    private static List<X509Certificate> certificates(byte[] source) throws Exception {
        List<X509Certificate> out = new ArrayList<>();
        for (Certificate c : x509().generateCertificates(new ByteArrayInputStream(source))) {
            out.add((X509Certificate) c);
        }
        return out;
    }

    /** A file's bytes, or an http:// URL's body (sent with `Metadata: true`, no proxy). */
    private static byte[] read(String source) throws Exception {
        if (!source.startsWith("http://")) {
            return Files.readAllBytes(Path.of(source));
        }
        HttpURLConnection con = (HttpURLConnection) new URL(source).openConnection(Proxy.NO_PROXY);
        con.setRequestProperty("Metadata", "true");
        con.setConnectTimeout(10_000);
        con.setReadTimeout(30_000);
        int status = con.getResponseCode();
        require(status == 200, "GET " + source + ": HTTP " + status);
        try (InputStream in = con.getInputStream()) {
            return in.readAllBytes();
        }
    }

    private static void require(boolean condition, String why) {
        if (!condition) {
            throw new IllegalStateException(why);
        }
    }
}
