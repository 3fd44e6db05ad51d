"""The Azure-Samples scheduled-events sample for non-VNET VMs, re-expressed call for call.

Executed by test_scheduled_events.py inside the test network namespace, where azimds
listens on 169.254.169.254:80. Usage: non_vnet_sample_probe.py (the test answers its
prompts on stdin, as a person at the console would).

Source: Azure-Samples/virtual-machines-scheduled-events-discover-endpoint-for-non-vnet-vm,
python/sample.py and python/util.py at 2a7e7c7 (2017-06-09), the last revision that runs:
HEAD's sample.py (c01b55e) calls make_address, check_ip_address and
get_ip_address_reg_env, which it neither defines nor imports (NameError on the first
call), and HEAD's python/sample/ imports names python/discovery/util.py does not define. No
package carries either, so the functions of that revision are restated below with the
same urllib calls, headers, URL and control flow; only `CLOUDCONTROLIP` is spelled
`SCHEDULEDEVENTSIP`, as HEAD renamed it (#10), and the Windows registry branch is left out
(this is Linux: the sample skips it there too).

It does what the sample does: discovery (a GET of the 2017-03-01 preview URL, valid when
the JSON has `Events`), then forever: GET, print the document, ask "Approve event? (y / n)"
for each event and POST {"DocumentIncarnation", "StartRequests"} on `y`, then "Press Enter
to continue.". The sample stops on Ctrl+C; here the test closes stdin, and the EOFError
input() raises ends the run with exit status 0.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


# ---------------------------------------------------------------- python/util.py (2a7e7c7)
def get_scheduled_events(address, headers):
    '''
    Make a GET request and return the response received.
    '''
    request = urllib.request.Request(address, headers=headers)
    return urllib.request.urlopen(request)


def post_scheduled_events(address, data, headers):
    '''
    Make a POST request.
    '''
    request = urllib.request.Request(address, data=str.encode(data), headers=headers)
    urllib.request.urlopen(request)


def make_address(ip_address):
    '''
    Returns the address for scheduled event endpoint from the IP address provided.
    '''
    return 'http://' + ip_address + '/metadata/scheduledevents?api-version=2017-03-01'


def check_ip_address(address, headers):
    '''
    Checks whether the address of the scheduled event endpoint is valid.
    '''
    try:
        response = get_scheduled_events(address, headers)
        return 'Events' in json.loads(response.read().decode('utf-8'))
    except (urllib.error.URLError, UnicodeDecodeError, json.decoder.JSONDecodeError) as _:
        return False


def get_ip_address_reg_env(use_registry):
    '''
    Get the IP address of scheduled event from registry or environment.
    Returns None if IP address is not provided or stored.
    '''
    ip_address = None
    if sys.platform == 'win32' or "linux" in sys.platform:
        ip_address = os.getenv('SCHEDULEDEVENTSIP')
    return ip_address


def get_address(arg_ip_address, use_registry, headers):
    '''
    Gets the address of the Scheduled Events endpoint.
    '''
    ip_address = None
    address = None
    if arg_ip_address:
        # use IP address provided in parameter.
        ip_address = arg_ip_address
    else:
        # use default IP address for machines in VNET.
        ip_address = '169.254.169.254'

    # Check if the IP address is valid. If not, try getting the IP address from registry
    # or environment. Exits if no IP address is valid.
    address = make_address(ip_address)
    if not check_ip_address(address, headers):
        print("The provided IP address is invalid or VM is not in VNET. " +
              "Trying registry and environment.")
        ip_address = get_ip_address_reg_env(use_registry)
        address = make_address(ip_address)
        if not check_ip_address(address, headers):
            print("Could not find a valid IP address. Please create your VM within a VNET " +
                  "or run discovery.py first")
            exit(1)
    return address


# ---------------------------------------------------------------- python/sample.py (2a7e7c7)
def main():
    '''
    Sample code for getting scheduled events.
    '''
    headers = {'metadata': 'true'}

    address = get_address(None, False, headers)

    print("Scheduled Events endpoint address = " + address)

    # Repeat until user terminates the script.
    while True:
        # Send a GET request for scheduled events and read the response.
        response = get_scheduled_events(address, headers)
        document = json.loads(response.read().decode('utf-8'))
        events = document['Events']
        print('Scheduled Events Document:\n' + str(document))

        # Go through each event in the response and prompt user for approval.
        for event in events:
            print("Current Event:\n" + str(event))
            approved = input("Approve event? (y / n): ")
            if approved.lower() == 'y':
                data = {
                    "DocumentIncarnation": document["DocumentIncarnation"],
                    "StartRequests": [{
                        "EventId": event["EventId"]
                    }]
                }
                print("Approving with the following:\n" + str(data))

                # Send a POST request to expedite.
                post_scheduled_events(address, json.dumps(data), headers)
        input("Press Enter to continue.")


if __name__ == '__main__':
    try:
        main()
    except EOFError:
        # The test closed stdin: the person at the console is done.
        print("\nend of input")
