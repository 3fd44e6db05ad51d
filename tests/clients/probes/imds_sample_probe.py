"""Microsoft's IMDSSample.py (github.com/microsoft/azureimds), re-expressed call for call.

Executed by test_attested.py inside the test network namespace, where azimds listens on
169.254.169.254:80. Usage: imds_sample_probe.py OUT.json WORKDIR API_VERSION

No package carries the sample (the notes of issue 9 searched PyPI and npm), so its code is
restated here from the repository's newest revision read (commit fab101c, IMDSSample.py
lines 1-86): the same requests calls with the same headers and proxies, the same openssl
command lines through subprocess.call(shell=True) in the current directory, the same
substring nonce check, the same "CA Issuers" line parsing and download. The api-version is
the one argument: the revision read pins 2019-03-11; a later revision (e47c780, per the
notes) moved it to 2021-02-01 and added a second `openssl verify` against DigiCert's root,
which fails against any CA but Microsoft's, as the Baltimore one below does, and is only
printed.

Differences, none in what is sent or decided:
* main() records what each step returned (the sample only prints) for the test to check.
* The sample's final `openssl verify` uses Baltimore's root, which cannot verify azimds'
  leaves; its printed result is recorded, not judged.
"""

import base64
import json
import re
import subprocess
import sys

import requests

imds_server_base_url = "http://169.254.169.254"

instance_api_version = sys.argv[3] if len(sys.argv) > 3 else "2019-03-11"
instance_endpoint = imds_server_base_url + "/metadata/instance?api-version=" + instance_api_version

attested_api_version = instance_api_version
attested_nonce = "1234576"
attested_endpoint = imds_server_base_url + "/metadata/attested/document?api-version=" + attested_api_version + "&nonce=" + attested_nonce

# Proxies must be bypassed when calling Azure IMDS
proxies = {
    "http": None,
    "https": None
}

TRACE = {}


def api_call(endpoint):
    headers = {'Metadata': 'True'}
    json_obj = requests.get(endpoint, headers=headers, proxies=proxies).json()
    return json_obj


def main():
    # Instance provider API call
    instance_json = api_call(instance_endpoint)
    print("Instance provider data:")
    pretty_print_json_obj_to_terminal(instance_json)
    TRACE["instance"] = instance_json

    # Attested provider API call
    attested_json = api_call(attested_endpoint)
    print("Attested provider validation:")
    attested_signature = attested_json['signature']
    TRACE["attested"] = attested_json
    validate_attested_data(attested_signature)
    validate_attested_cert(attested_signature)


def find_phrase_in_file(filename, phrase):
    file = open(filename, "r")
    for line in file:
        if re.search(phrase, line):
            return line


# Base-64 decode the string
def decode_attested_data(attested_signature):
    decoded_string = base64.b64decode(attested_signature).decode('utf-8', 'replace')
    return decoded_string


def pretty_print_json_obj_to_terminal(json_obj):
    print(json.dumps(json_obj, sort_keys=True, indent=4, separators=(',', ': ')))


# Build the cert chain for validation
def validate_attested_cert(attested_signature):
    # Dump PKCS7, base64 encoded signature to file.
    file = open("signature", "w")
    file.write(attested_signature)
    file.close()
    print("Cert chain validation.")
    subprocess.call("openssl enc -base64 -d -A < signature > decoded_signature", shell=True)
    subprocess.call("openssl pkcs7 -in decoded_signature -inform DER  -print_certs -out signer.pem", shell=True)
    subprocess.call("openssl x509 -in signer.pem -text -noout > cert_info", shell=True)
    intermediate_cert_url = find_phrase_in_file("cert_info", "CA Issuers").split("URI:", 1)[1]
    TRACE["intermediate_cert_url"] = intermediate_cert_url
    r = requests.get(intermediate_cert_url)
    TRACE["intermediate_status"] = r.status_code
    TRACE["intermediate_request_url"] = r.request.url
    with open('intermediate.cer', 'wb') as f:
        f.write(r.content)
    subprocess.call("openssl x509 -inform der -in intermediate.cer -out intermediate.pem", shell=True)
    # We, finally, verify the complete cert chain.
    TRACE["baltimore_verify_exit"] = subprocess.call("openssl verify -verbose -CAfile /etc/ssl/certs/Baltimore_CyberTrust_Root.pem -untrusted intermediate.pem signer.pem", shell=True)


# Ensure the nonce in the response is the same as the one we supplied.
def validate_attested_data(attested_signature):
    decoded_attested_data = decode_attested_data(attested_signature)
    TRACE["nonce_found"] = attested_nonce in decoded_attested_data
    if attested_nonce in decoded_attested_data:
        print("Nonce values match.")


if __name__ == "__main__":
    out_path = sys.argv[1]
    try:
        main()
        TRACE["result"] = "completed"
    finally:
        with open(out_path, "w", encoding="utf-8") as fh:
            json.dump(TRACE, fh, indent=1)
