-- GET /api/method/universal_workshop.api.get_technician_skills?technician=TECH-0001
-- The technician and their skills, best first. Tags: technician:<technician> (the technician row
-- and its Technician Skill child rows).

-- @result technician one required Technician:technician
SELECT `name`, `technician_name`, `employee`, `status`, `phone`, `email`
FROM `tabTechnician`
WHERE `name` = :technician;

-- @result skills many
SELECT `skill`, `level`, `certified`, `service_type`
FROM `tabTechnician Skill`
WHERE `parent` = :technician AND `parenttype` = 'Technician' AND `parentfield` = 'skills'
ORDER BY `level` DESC, `idx`;
