<#
.SYNOPSIS
  Installs or updates the TLS security gateway as a Windows service (WinSW v3), with its state
  under C:\ProgramData\TlsGateway and firewall rules for the base ports.
.DESCRIPTION
  Run in an elevated PowerShell from the repository folder:
    powershell -ExecutionPolicy Bypass -File deploy\windows\install-service.ps1 -WinSW C:\Downloads\WinSW-x64.exe -Ports 10560,10561 -BackendPorts 20560,20561
  First run: creates the venv, installs the gateway, locks the data folder down, writes the
  example configuration and STOPS, so that the service never starts on the example. Edit
  gateway.yaml, then run the same command again: `gateway check`, the base folders opened to the
  service account, the service (as NT AUTHORITY\LocalService, never LocalSystem) and the firewall
  rules. Running it again later updates everything in place (new gateway version, changed ports,
  changed configuration); nothing is duplicated. -WinSW may be left out once the service exists.
  Every step is checked; the script stops at the first failure and says which step it was.
#>
[CmdletBinding()]
param(
    [string]$WinSW = "",
    [int[]]$Ports = @(10560, 10561),
    [int[]]$BackendPorts = @(),
    [string]$InstallDir = "C:\Program Files\TlsGateway",
    [string]$DataDir = "C:\ProgramData\TlsGateway",
    [string]$Python = "py",
    [string]$PythonVersion = "-3.12"
)
$ErrorActionPreference = "Stop"
Set-StrictMode -Version 3
$ServiceId = "tls-gateway"
$Repo = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path
$Venv = Join-Path $InstallDir "venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"
$Config = Join-Path $DataDir "gateway.yaml"
$Wrapper = Join-Path $InstallDir "$ServiceId.exe"
$BasesRule = "TLS gateway (bases)"
$LegacyRule = "Legacy server (direct access blocked)"

# Accounts by well-known SID, never by name: names are translated on localized Windows
# (Administrators is «Администраторы» on Russian Windows) and icacls fails on a name it cannot find.
$SidAdministrators = "S-1-5-32-544"
$SidSystem = "S-1-5-18"
$SidLocalService = "S-1-5-19"
# The one spelling of LocalService the service control manager accepts on every language of Windows.
$ServiceAccount = "NT AUTHORITY\LocalService"

function Invoke-Native {
    # Runs a program, and stops the script when its exit code is not one of -Allowed, showing what
    # it printed. "Continue" inside: Windows PowerShell 5.1 turns any line a program writes to
    # stderr (pip's notices) into a terminating error under "Stop", even when the program succeeds.
    param(
        [Parameter(Mandatory = $true)][string]$What,
        [Parameter(Mandatory = $true)][scriptblock]$Command,
        [int[]]$Allowed = @(0)
    )
    $ErrorActionPreference = "Continue"
    $global:LASTEXITCODE = 0
    $output = @(& $Command 2>&1 | ForEach-Object { "$_" })
    $code = $LASTEXITCODE
    if ($Allowed -notcontains $code) {
        $output | ForEach-Object { Write-Host "    $_" }
        throw "$What failed (exit code $code). Nothing after this step was done; fix the cause and run the script again."
    }
    return $output
}

function Test-OnlyAccounts([string]$Path, [string[]]$Sids, [switch]$MayInherit) {
    # Reads the ACL back rather than trusting icacls: the data folder must not inherit (ProgramData
    # gives Users read), and no folder may name an account outside $Sids.
    $acl = Get-Acl -LiteralPath $Path
    if (-not $MayInherit -and -not $acl.AreAccessRulesProtected) {
        throw "$Path still inherits permissions from its parent folder; its keys would be readable by other accounts."
    }
    foreach ($rule in $acl.Access) {
        $sid = $rule.IdentityReference.Translate([Security.Principal.SecurityIdentifier]).Value
        if ($Sids -notcontains $sid) {
            throw "$Path grants access to $($rule.IdentityReference) ($sid); only Administrators, SYSTEM and LocalService may have it."
        }
    }
}

function Copy-WithFolders([string]$From, [string]$To) {
    # The shipped files name the default folders; -InstallDir / -DataDir must reach the service too.
    $text = Get-Content -Raw -Encoding UTF8 $From
    $text = $text.Replace("C:\Program Files\TlsGateway", $InstallDir).Replace("C:\ProgramData\TlsGateway", $DataDir)
    Set-Content -Encoding UTF8 -Path $To -Value $text
}

function Set-FirewallRule([string]$Name, [string]$Action, [int[]]$RulePorts) {
    # Delete, then add: running the script again with other ports replaces the rule, never adds a second one.
    # netsh answers 1 when no rule has that name.
    Invoke-Native "looking up the firewall rule '$Name'" { netsh advfirewall firewall show rule name="$Name" } -Allowed 0, 1 | Out-Null
    if ($LASTEXITCODE -eq 0) {
        Invoke-Native "removing the old firewall rule '$Name'" { netsh advfirewall firewall delete rule name="$Name" } | Out-Null
    }
    if ($RulePorts.Count -gt 0) {
        $portList = $RulePorts -join ","
        Invoke-Native "adding the firewall rule '$Name'" { netsh advfirewall firewall add rule name="$Name" dir=in action=$Action protocol=TCP localport=$portList } | Out-Null
        Write-Host "Firewall: '$Name' ($Action TCP $($RulePorts -join ', '))"
    }
}

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "Run this script in an elevated PowerShell (Run as administrator)."
}
$serviceExists = $null -ne (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue)
if ($WinSW -eq "" -and -not $serviceExists) {
    throw "Give the downloaded WinSW v3 program: -WinSW C:\Downloads\WinSW-x64.exe (https://github.com/winsw/winsw/releases)."
}
if ($WinSW -ne "") {
    # tls-gateway.xml is written in WinSW v3's form; v2 reads the account differently and would
    # install the service as LocalSystem. v3 answers --version, v2 does not.
    $version = (Invoke-Native "asking $WinSW for its version (WinSW v3 is needed)" { & $WinSW --version }) -join " "
    if ($version -notmatch '(^|\s)v?3\.') {
        throw "$WinSW reports version '$version'; this script needs WinSW v3 (WinSW-x64.exe from a v3 release)."
    }
}

New-Item -ItemType Directory -Force -Path $InstallDir, $DataDir, (Join-Path $DataDir "state"), (Join-Path $DataDir "logs") | Out-Null

# The data folder holds the users' store, the HMAC key and the local CA's private key: no
# inheritance from ProgramData, Administrators and SYSTEM full control, the service account modify.
Invoke-Native "setting the permissions of $DataDir" { icacls $DataDir /inheritance:r /grant:r "*${SidAdministrators}:(OI)(CI)F" "*${SidSystem}:(OI)(CI)F" "*${SidLocalService}:(OI)(CI)M" } | Out-Null
Test-OnlyAccounts $DataDir @($SidAdministrators, $SidSystem, $SidLocalService)
# Whatever was inside before (an older install, a copied state folder) inherits from it again.
Invoke-Native "resetting the permissions inside $DataDir" { icacls (Join-Path $DataDir "*") /reset /T } | Out-Null
Test-OnlyAccounts (Join-Path $DataDir "state") @($SidAdministrators, $SidSystem, $SidLocalService) -MayInherit
Write-Host "Permissions of $DataDir (and of state\ and logs\ inside it):"
Invoke-Native "reading the permissions of $DataDir" { icacls $DataDir } | ForEach-Object { Write-Host "    $_" }
Invoke-Native "reading the permissions of $DataDir\state" { icacls (Join-Path $DataDir "state") } | ForEach-Object { Write-Host "    $_" }

if (-not (Test-Path $VenvPython)) {
    Invoke-Native "creating the venv (is Python 3.12 installed? try: py -3.12 --version)" { & $Python $PythonVersion -m venv $Venv } | Out-Null
}
Invoke-Native "updating pip in $Venv" { & $VenvPython -m pip install --quiet --upgrade pip } | Out-Null
# Not editable and without the test extras: the service runs the copy in the venv, not the
# checkout. --upgrade reinstalls the gateway from the folder even when its version is unchanged.
Invoke-Native "installing the gateway into $Venv" { & $VenvPython -m pip install --quiet --upgrade $Repo } | Out-Null

if (-not (Test-Path $Config)) {
    Copy-WithFolders (Join-Path $PSScriptRoot "gateway.yaml") $Config
    Write-Host ""
    Write-Host "Wrote the example configuration $Config."
    Write-Host "Edit the bases in it (notepad `"$Config`"), then run this script again to install and start the service."
    exit 0
}

& $VenvPython -m gateway -c $Config check
if ($LASTEXITCODE -eq 2) { throw "$Config is not valid (see above); the service was not installed or changed." }
if ($LASTEXITCODE -ne 0) { Write-Warning "gateway check found problems with a base (see above); the service is installed anyway." }

# The service account reads each base's folder and writes its lists (edited in the console) and backups.
$folderQuery = @'
import sys
from gateway.config import load_config
cfg = load_config(sys.argv[1])
for base in cfg.bases:
    print("read", base.folder)
    print("modify", base.server_folder)
    print("modify", base.backups_folder)
for path in (*cfg.ip_lists.whitelist, *cfg.ip_lists.blacklist):
    print("read", path)
'@
$grants = Invoke-Native "reading the base folders from $Config" { & $VenvPython -c $folderQuery $Config }
foreach ($line in $grants) {
    $right, $path = $line -split " ", 2
    if (-not (Test-Path -LiteralPath $path)) {
        if ($right -eq "modify") { New-Item -ItemType Directory -Force -Path $path | Out-Null }
        else { Write-Warning "$path does not exist yet; run this script again once it does."; continue }
    }
    $ace = if ($right -eq "modify") { "*${SidLocalService}:(OI)(CI)M" } else { "*${SidLocalService}:(OI)(CI)RX" }
    if (-not (Test-Path -LiteralPath $path -PathType Container)) { $ace = $ace.Replace("(OI)(CI)", "") }
    Invoke-Native "giving the service account $right access to $path" { icacls $path /grant $ace } | Out-Null
    Write-Host "LocalService may $right $path"
}

if ($serviceExists) {
    Stop-Service -Name $ServiceId -ErrorAction Stop
}
if ($WinSW -ne "") {
    Copy-Item $WinSW $Wrapper -Force
}
Copy-WithFolders (Join-Path $PSScriptRoot "$ServiceId.xml") (Join-Path $InstallDir "$ServiceId.xml")
if ($serviceExists) {
    Invoke-Native "updating the service from $ServiceId.xml" { & $Wrapper refresh } | Out-Null
} else {
    Invoke-Native "installing the service" { & $Wrapper install } | Out-Null
}

# What the service control manager really holds, not what the XML asked for: a service without
# an account runs as LocalSystem, which can read every file on the machine.
$query = Invoke-Native "asking the service control manager for the service's account" { sc.exe qc $ServiceId }
$match = $query | Select-String -Pattern "SERVICE_START_NAME\s*:\s*(.+)$" | Select-Object -First 1
$startName = if ($match) { $match.Matches[0].Groups[1].Value.Trim() } else { "" }
Write-Host "The service runs as: $startName"
if ($startName -eq "" -or $startName -ieq "LocalSystem" -or $startName -ine $ServiceAccount) {
    throw "The service '$ServiceId' would run as '$startName', not $ServiceAccount; it was not started. Use WinSW v3 and the shipped $ServiceId.xml."
}

Set-FirewallRule $BasesRule "allow" $Ports
# Loopback traffic is not filtered by Windows Firewall: the gateway still reaches the legacy server.
Set-FirewallRule $LegacyRule "block" $BackendPorts

Invoke-Native "starting the service" { & $Wrapper start } | Out-Null
Start-Sleep -Seconds 5
& $VenvPython -m gateway -c $Config status
if ($LASTEXITCODE -ne 0) { Write-Warning "the service was started but the gateway does not answer yet; see $DataDir\logs." }
Write-Host "Installed. Logs: $DataDir\logs. Check: & '$VenvPython' -m gateway -c '$Config' check"
